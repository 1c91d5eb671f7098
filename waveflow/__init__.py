"""WaveFlow in PyTorch, with the measurement layer of Douwes, Esling & Briot (2021)."""
from __future__ import annotations

from .config import PAPER, PAPER_CONFIGS, WaveFlowConfig, get_config
from .model import WaveFlow

__version__ = "0.1.0"

__all__ = ["PAPER", "PAPER_CONFIGS", "WaveFlow", "WaveFlowConfig", "get_config", "__version__"]
