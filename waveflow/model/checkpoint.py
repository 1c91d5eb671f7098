"""Checkpoints: config + weights + optimiser + step + every RNG state, written atomically.

A checkpoint is a single ``torch.save`` file holding ``config`` (``asdict``), ``model`` (state
dict), ``optimizer``, ``step``, ``rng`` (Python, NumPy, torch CPU and CUDA states) and free-form
``extra`` (training options, metrics). It is written to a temporary file in the same folder,
flushed to disk and renamed over the target, so a crash never leaves a half-written checkpoint:
the previous file stays intact until the new one is complete.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write
from .config import WaveFlowConfig
from .flow import WaveFlow

FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every random state training depends on."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when CUDA is present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    # States must be CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
    """Write a complete, resumable checkpoint atomically."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict, with a clear error for missing or foreign files."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {p} cannot be read ({exc}); expected a file written by waveflow") from exc
    if not isinstance(payload, dict) or "config" not in payload or "model" not in payload:
        raise ValueError(f"checkpoint {p}: expected a waveflow checkpoint with 'config' and 'model' entries")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[WaveFlow, dict[str, Any]]:
    """Rebuild the model from a checkpoint.

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
