"""WaveFlow in PyTorch, with the measurement layer of Douwes, Esling & Briot (2021).

The package is layered; imports only point down::

    shell       cli, pipeline, report                 commands, the notebook runner, the report page
    workflows   perf/ > experiments/ > train/ > measures/
    domains     model/ | data/ | energy/ | analysis/ | zoo/   never import each other
    shared      audio, devices > paths, files

The model and its configurations are importable from the top level (``from waveflow import
WaveFlow``). They are loaded on first use, so that ``import waveflow.energy`` — the meter, which
needs no torch — does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

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


#: module paths from before the workflows were grouped into packages -> where they live now
MOVED = {
    "waveflow.quality": "waveflow.measures.quality",
    "waveflow.flops": "waveflow.measures.flops",
    "waveflow.zoo_energy": "waveflow.experiments.zoo_energy",
    "waveflow.energy_to_quality": "waveflow.experiments.energy_to_quality",
    "waveflow.distributed": "waveflow.train.distributed",
    **{
        f"waveflow.{m}": f"waveflow.perf.{m}"
        for m in ("bench", "breakdown", "overhead", "workloads", "cpu_kernels", "gpu_check")
    },
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import waveflow.quality`` (and the other old paths in :data:`MOVED`) gives the module at its
    new path, the same object, imported only when asked for."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        # The import machinery stamped the alias's spec on the module; give it its own back (reload and
        # pickling use it). The module kept its own name, so its spec can be built from that again.
        module.__spec__ = importlib.util.spec_from_file_location(
            module.__name__, module.__file__, submodule_search_locations=getattr(module, "__path__", None)
        )


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    """Re-export the model's public names lazily (PEP 562)."""
    if name in _FACE:
        return getattr(importlib.import_module(_FACE[name]), name)
    raise AttributeError(f"module 'waveflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACE))
