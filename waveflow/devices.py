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
    """``"auto"`` -> CUDA when available, else CPU; explicit CUDA without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA was requested but torch sees no GPU (torch {torch.__version__})")
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
