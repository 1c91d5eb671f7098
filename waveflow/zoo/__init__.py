"""Runnable PyTorch replicas of the five models of Douwes et al. (2021), Table 1.

SampleRNN, SING, WaveGAN, GANSynth and FloWaveNet, each a faithful copy of the official
architecture and training step (parameter counts match the official configurations exactly),
for measuring compute and energy. They are not trained generators. This module only
re-exports; see :mod:`waveflow.zoo.registry` (reported figures, :func:`build`) and
:mod:`waveflow.zoo.cost` (MACs per inference call and per training step).
"""

from __future__ import annotations

from .base import ZooModel
from .cost import ForwardCost, TrainingStepCost, cost_table, count_macs, forward_cost, training_step_cost
from .flowavenet import FloWaveNet, FloWaveNetConfig
from .gansynth import GANSynth, GANSynthConfig
from .registry import MODEL_NAMES, SPECS, ZooSpec, build, get_spec, make_batch, make_inputs, training_step
from .samplernn import SampleRNN, SampleRNNConfig
from .sing import SING, SINGConfig
from .wavegan import WaveGAN, WaveGANConfig

__all__ = [
    "MODEL_NAMES",
    "SING",
    "SPECS",
    "FloWaveNet",
    "FloWaveNetConfig",
    "ForwardCost",
    "GANSynth",
    "GANSynthConfig",
    "SINGConfig",
    "SampleRNN",
    "SampleRNNConfig",
    "TrainingStepCost",
    "WaveGAN",
    "WaveGANConfig",
    "ZooModel",
    "ZooSpec",
    "build",
    "cost_table",
    "count_macs",
    "forward_cost",
    "get_spec",
    "make_batch",
    "make_inputs",
    "training_step",
    "training_step_cost",
]
