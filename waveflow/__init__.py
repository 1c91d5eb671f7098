"""WaveFlow in PyTorch, with the measurement layer of Douwes, Esling & Briot (2021).

The model and its configurations are importable from the top level; the measurement layer lives
in submodules named for what they hold: :mod:`waveflow.audio`, :mod:`waveflow.data`,
:mod:`waveflow.train`, :mod:`waveflow.synthesis`, :mod:`waveflow.quality`, :mod:`waveflow.energy`,
:mod:`waveflow.carbontracking`, :mod:`waveflow.carbon`, :mod:`waveflow.hardware`,
:mod:`waveflow.flops`, :mod:`waveflow.measure`, :mod:`waveflow.pareto`.
"""
from __future__ import annotations

from .config import PAPER, PAPER_CONFIGS, WaveFlowConfig, get_config
from .model import WaveFlow
from .synthesis import FastSynthesizer, synthesize

__version__ = "0.1.0"

__all__ = ["PAPER", "PAPER_CONFIGS", "FastSynthesizer", "WaveFlow", "WaveFlowConfig", "get_config", "synthesize",
           "__version__"]
