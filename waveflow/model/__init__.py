"""The vocoder: WaveFlow (Ping et al., ICML 2020) with mel conditioning, torch only.

:mod:`~waveflow.model.config` holds the configurations (the paper's WF1-WF5), :mod:`~.modules`
the building blocks, :mod:`~.flow` the model with its density pass and reference inverse,
:mod:`~.synthesis` the cached fast inverse, and :mod:`~.checkpoint` the on-disk format.
"""

from .checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import PAPER, PAPER_CONFIGS, PaperConfig, WaveFlowConfig, from_dict_checked, get_config
from .flow import WaveFlow, parameter_count, prepare_latent, squeeze, unsqueeze
from .synthesis import DEFAULT_SIGMA, FastSynthesizer, fold_weight_norm, synthesize

__all__ = [
    "DEFAULT_SIGMA",
    "FORMAT_VERSION",
    "PAPER",
    "PAPER_CONFIGS",
    "FastSynthesizer",
    "PaperConfig",
    "WaveFlow",
    "WaveFlowConfig",
    "fold_weight_norm",
    "from_dict_checked",
    "get_config",
    "load_checkpoint",
    "parameter_count",
    "prepare_latent",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "squeeze",
    "synthesize",
    "unsqueeze",
]
