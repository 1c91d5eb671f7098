"""Where tensors run: one device rule for every command, and the switch to deterministic kernels.

Training, evaluation, synthesis and the E_train/E_gen experiments all accept ``--device auto``
and must agree on what it means, so the rule lives here rather than in any one of them. An
explicit ``cuda`` on a machine where torch sees no GPU is an error, never a silent CPU run: an
energy figure measured on the wrong device would be mislabelled.
"""

from __future__ import annotations

import os

import torch


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a name torch does not know, CUDA without a GPU, or a GPU
    index this machine does not have is an error naming the value."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r}: not a device name; expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"--device {device}: no such GPU here: CUDA was requested but torch sees no GPU "
                f"(torch {torch.__version__})"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device}: no such GPU here; torch sees {count}: cuda:0 to cuda:{count - 1}")
    return dev


def use_deterministic_kernels(device: torch.device) -> None:
    """On CUDA, make cuBLAS/cuDNN reduce in a fixed order so that a resumed run repeats an
    uninterrupted one bit for bit (slower kernels). CPU kernels are deterministic already."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


#: Precisions the synthesis path accepts (``--precision``); fp32 is the default and the reference.
PRECISIONS = ("fp32", "bf16")


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` runs bfloat16 matrix products natively, and what says so.

    On a CPU that means AVX512-BF16 or AMX tiles: without them oneDNN emulates bf16 with float32
    arithmetic plus conversions, which is slower than fp32 and would make a "bf16 speed-up" row a
    measurement of the emulation. On CUDA it is compute capability 8.0 or newer (Ampere), where
    bf16 runs on the tensor cores.
    """
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        ok = torch.cuda.is_bf16_supported()
        return ok, f"CUDA compute capability {major}.{minor}" + ("" if ok else " (< 8.0: no bf16 tensor cores)")
    flags = []
    if torch.cpu._is_avx512_bf16_supported():
        flags.append("avx512_bf16")
    if torch.cpu._is_amx_tile_supported():
        flags.append("amx_tile")
    if flags:
        return True, "CPU flags " + ", ".join(flags)
    return False, "this CPU has neither AVX512-BF16 nor AMX (bf16 would be emulated in fp32)"


def compute_dtype(precision: str, device: torch.device, allow_emulated: bool = False) -> torch.dtype:
    """The dtype of a ``--precision`` on ``device``; ValueError for an unknown name or, unless
    ``allow_emulated``, for bf16 where the hardware has no native support (see :func:`bf16_support`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    ok, why = bf16_support(device)
    if not ok and not allow_emulated:
        raise ValueError(f"--precision bf16: no native bfloat16 on {device.type}: {why}; use fp32")
    return torch.bfloat16
