"""WaveFlow in PyTorch, with the measurement layer of Douwes, Esling & Briot (2021).

The package is layered; imports only point down::

    shell       cli, pipeline                        commands and the notebook runner
    workflows   experiments, bench > train > quality, flops
    domains     model/ | data/ | energy/ | analysis/  never import each other
    shared      audio, devices > paths, files

The model and its configurations are importable from the top level (``from waveflow import
WaveFlow``). They are loaded on first use, so that ``import waveflow.energy`` — the meter, which
needs no torch — does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the sub-module that defines it
_FACE = {
    "PAPER": "waveflow.model",
    "PAPER_CONFIGS": "waveflow.model",
    "WaveFlowConfig": "waveflow.model",
    "get_config": "waveflow.model",
    "WaveFlow": "waveflow.model",
    "FastSynthesizer": "waveflow.model",
    "synthesize": "waveflow.model",
}

__all__ = [
    "PAPER",
    "PAPER_CONFIGS",
    "FastSynthesizer",
    "WaveFlow",
    "WaveFlowConfig",
    "get_config",
    "synthesize",
    "__version__",
]

if TYPE_CHECKING:
    from .model import PAPER, PAPER_CONFIGS, FastSynthesizer, WaveFlow, WaveFlowConfig, get_config, synthesize


def __getattr__(name: str) -> Any:
    """Re-export the model's public names lazily (PEP 562)."""
    if name in _FACE:
        return getattr(importlib.import_module(_FACE[name]), name)
    raise AttributeError(f"module 'waveflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACE))
