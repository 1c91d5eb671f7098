"""Checkpoints: config + weights + optimiser + step + every RNG state, written atomically, read as data.

A checkpoint is a single ``torch.save`` file holding ``config`` (``asdict``), ``model`` (state
dict), ``optimizer``, ``step``, ``rng`` (Python, NumPy, torch CPU and CUDA states) and free-form
``extra`` (training options, metrics). Everything in it is a tensor, a number, a string, ``None``,
or a list/tuple/dict of those, which is exactly what ``torch.load(..., weights_only=True)``
accepts: a checkpoint is data, and loading one never imports or calls anything named inside it,
so a file from someone else cannot run code on this machine. :func:`save_checkpoint` refuses to
write anything else, and :func:`read_checkpoint` is the only place a checkpoint is unpickled.

Format 1 (before this module stored RNG states as plain data) kept NumPy's state as an
``ndarray``; such files still load through the same safe loader, with only the few NumPy
globals an array needs allowed (:data:`V1_NUMPY_GLOBALS`), and their RNG state is converted to
the format-2 layout on reading.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write
from .config import WaveFlowConfig
from .flow import WaveFlow

FORMAT_VERSION = 2

# What a format-1 checkpoint's NumPy RNG state (a uint32 ndarray) needs to be rebuilt, and nothing
# more. ``_reconstruct`` is taken from an array's own pickle recipe so the name matches this NumPy;
# the alias covers files written under NumPy 1.x, where the module was ``numpy.core``.
_NP_RECONSTRUCT = np.array(0).__reduce__()[0]
V1_NUMPY_GLOBALS: list[Callable | tuple[Callable, str]] = [
    (_NP_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (_NP_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType: the key's dtype is rebuilt with setstate
]

EXPECTED = "expected a waveflow checkpoint (a torch.save file of config, model, optimizer, step, rng and extra)"
_MT_WORDS = 624  # words of Mersenne-Twister state (Python's state adds the position as a 625th)


# ----------------------------------------------------------------------------------------------
# RNG states as plain data
def rng_state() -> dict[str, Any]:
    """Every random state training depends on, as tensors, numbers and strings only.

    Python's Mersenne Twister becomes its 625 words as an int64 tensor (each word < 2**32), NumPy's
    legacy generator its 624-word key as an int64 tensor plus position and cached Gaussian.
    """
    version, words, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when CUDA is present)."""
    py, npy = state["python"], state["numpy"]
    random.setstate((int(py["version"]), tuple(int(w) for w in py["state"].tolist()), py["gauss_next"]))
    key = npy["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state((npy["bit_generator"], key, int(npy["pos"]), int(npy["has_gauss"]), float(npy["gauss"])))
    # States must be CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _rng_from_v1(rng: Any, where: str) -> dict[str, Any]:
    """Format 1's ``(random.getstate(), np.random.get_state(), ...)`` tuples in the format-2 layout."""
    try:
        version, words, gauss_next = rng["python"]
        name, key, pos, has_gauss, gauss = rng["numpy"]
        ok = isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape == (_MT_WORDS,)
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok or len(words) != _MT_WORDS + 1 or not isinstance(rng.get("torch"), torch.Tensor):
        raise ValueError(f"{where}: format-1 'rng' entry is malformed; expected Python, NumPy and torch states")
    out = {
        "python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": rng["torch"],
    }
    if "cuda" in rng:
        out["cuda"] = list(rng["cuda"])
    return out


def _check_rng(rng: Any, where: str) -> None:
    """A format-2 ``rng`` entry has the layout :func:`set_rng_state` reads."""
    try:
        py, npy = rng["python"], rng["numpy"]
        ok = (
            tuple(py["state"].shape) == (_MT_WORDS + 1,)
            and tuple(npy["key"].shape) == (_MT_WORDS,)
            and isinstance(npy["pos"], int)
            and isinstance(rng["torch"], torch.Tensor)
        )
    except (TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise ValueError(f"{where}: 'rng' entry is malformed; expected Python, NumPy and torch states as tensors")


# ----------------------------------------------------------------------------------------------
# Writing
def _plain(obj: Any, where: str) -> Any:
    """``obj`` if it holds only what the safe loader reads back (paths become strings), else TypeError.

    Checked on writing, so a checkpoint that would need ``weights_only=False`` is never made.
    """
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint entry {where}: key {k!r} is a {type(k).__name__}; expected str or int")
        return type(obj)((k, _plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
    raise TypeError(
        f"checkpoint entry {where} is a {type(obj).__name__}; expected tensors, numbers, strings, lists and dicts"
    )


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file in the target folder, fsync, then rename over ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    return atomic_write(path, write)


def save_checkpoint(
    path: str | os.PathLike,
    model: WaveFlow,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete, resumable checkpoint atomically.

    Raises:
        TypeError: if ``extra`` (or anything else) holds an object the safe loader could not read.
    """
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(_plain(payload, "checkpoint"), path)


# ----------------------------------------------------------------------------------------------
# Reading
def load_error_reason(exc: BaseException) -> str:
    """One line of why ``torch.load`` refused a file, without its advice to load unsafely."""
    text = str(exc)
    m = re.search(r"WeightsUnpickler error:(.*)", text, flags=re.DOTALL)
    lines = [ln.strip() for ln in (m.group(1) if m else text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    line = re.split(r"\. Please use|\. Check the documentation", line)[0].strip()
    return line if len(line) <= 200 else line[:197] + "..."


def _torch_load(p: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` without torch's warning about a foreign pickle protocol,
    which would break the one-line error the refused file gets."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(p, map_location=map_location, weights_only=True)


def _safe_load(p: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)``; a refusal caused only by NumPy arrays is retried with
    :data:`V1_NUMPY_GLOBALS` allowed (format 1), never with ``weights_only=False``."""
    try:
        return _torch_load(p, map_location)
    except pickle.UnpicklingError:
        pass
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... for foreign files
        raise ValueError(f"checkpoint {p} cannot be read ({load_error_reason(exc)}); {EXPECTED}") from None
    try:
        with torch.serialization.safe_globals(V1_NUMPY_GLOBALS):
            payload = _torch_load(p, map_location)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(
            f"checkpoint {p} was refused by the safe loader ({load_error_reason(exc)}); {EXPECTED}"
        ) from None
    if not (isinstance(payload, dict) and payload.get("format_version") == 1):
        raise ValueError(f"checkpoint {p} holds NumPy objects but is not format 1; {EXPECTED}")
    return payload


def _check_model(p: Path, raw_config: Any, state: Any) -> WaveFlowConfig:
    """The config has exactly the fields of :class:`WaveFlowConfig` and the weights fit it."""
    if not isinstance(raw_config, dict):
        raise ValueError(f"checkpoint {p}: 'config' is a {type(raw_config).__name__}; expected a dict of model options")
    known = WaveFlowConfig.__dataclass_fields__.keys()
    unknown, missing = sorted(set(raw_config) - known), sorted(known - set(raw_config))
    if unknown or missing:
        raise ValueError(
            f"checkpoint {p}: 'config' has unknown field(s) {unknown} and lacks {missing}; "
            f"expected exactly {sorted(known)}"
        )
    try:
        config = WaveFlowConfig(**raw_config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {p}: 'config' is invalid: {exc}") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())):
        raise ValueError(f"checkpoint {p}: 'model' is not a state dict; expected a dict of parameter name -> tensor")
    with torch.device("meta"):  # shapes only, nothing allocated
        expected = {k: tuple(v.shape) for k, v in WaveFlow(config).state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} is {tuple(state[k].shape)}, expected {shape}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"checkpoint {p}: weights do not match its config: {'; '.join(problems[:3])}{more}")
    return config


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint dict through the safe loader; the one place checkpoints are read.

    Returns the payload with ``rng`` in the format-2 layout whatever the file's format, so
    :func:`set_rng_state` takes it as is. ``format_version`` stays what the file says.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: one line naming the file and what was expected, for anything that is not a
            well-formed waveflow checkpoint (foreign zip or pickle, a pickle naming a global,
            missing entries, a config with unknown or missing fields, weights of other shapes).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    payload = _safe_load(p, map_location)
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        found = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"checkpoint {p} holds {found}; {EXPECTED}")
    version = payload.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise ValueError(f"checkpoint {p}: format_version {version!r}; expected 1 or {FORMAT_VERSION}")
    step = payload.get("step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"checkpoint {p}: 'step' is {step!r}; expected an integer >= 0")
    if not isinstance(payload.get("extra", {}), dict):
        raise ValueError(f"checkpoint {p}: 'extra' is a {type(payload['extra']).__name__}; expected a dict")
    _check_model(p, payload["config"], payload["model"])
    if "rng" in payload:
        if version == 1:
            payload["rng"] = _rng_from_v1(payload["rng"], f"checkpoint {p}")
        _check_rng(payload["rng"], f"checkpoint {p}")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[WaveFlow, dict[str, Any]]:
    """Rebuild the model from a checkpoint (read through :func:`read_checkpoint`, so safely).

    Returns:
        ``(model in eval mode on device, info)`` where ``info`` has ``config``, ``step``, ``extra``
        and ``path``.
    """
    payload = read_checkpoint(path, map_location=device)
    config = WaveFlowConfig.from_dict(payload["config"])
    model = WaveFlow(config).to(device)
    model.load_state_dict(payload["model"])
    model.eval()
    info = {"config": config, "step": payload.get("step", 0), "extra": payload.get("extra", {}), "path": str(path)}
    return model, info
