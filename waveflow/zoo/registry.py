"""Registry of the five Table 1 replicas: what the papers report, and how to build each model.

Douwes, Esling & Briot (2021) estimate the training energy of SampleRNN, SING, WaveGAN,
GANSynth and FloWaveNet from each paper's GPU count, GPU TDP and training hours (their
Table 1). A bottom-up estimate needs, per model, the compute of one training step and the
number of steps, and the compute of one inference call and the audio it produces: the
:class:`ZooSpec` records hold the reported side (hours, GPUs, steps, batch, audio per
forward), sourced from the seed paper's Table 1 and the notes on the official code in
``waveflow/zoo/REFERENCES.md`` (which give the code file and line behind every figure);
:func:`build` gives the replicas whose cost :mod:`waveflow.zoo.cost` counts.

Reported figures the sources do not pin down are ``None`` (SampleRNN and SING publish no step
count) and every uncertainty is spelled out in ``notes`` and in the model modules' docstrings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Device, ZooModel
from .flowavenet import FloWaveNet, FloWaveNetConfig
from .gansynth import GANSynth, GANSynthConfig
from .samplernn import SampleRNN, SampleRNNConfig
from .sing import SING, SINGConfig
from .wavegan import WaveGAN, WaveGANConfig


@dataclass(frozen=True)
class ZooSpec:
    """One Table 1 model as reported: data, schedule, hardware, and the sizes derived from its code.

    ``examples_per_training_step`` counts real training examples consumed by one step as the
    original code defines it (WaveGAN: 5 critic updates x 64 clips; SampleRNN: 128 chunks of
    512 samples). ``reference_macs_per_forward`` is the count ``waveflow/zoo/REFERENCES.md`` derives for one
    network forward producing ``audio_samples_per_forward`` samples (conv/linear/recurrent
    matmuls only), the figure the counted MACs are checked against.
    """

    name: str
    title: str
    sample_rate: int
    audio_samples_per_forward: int
    batch_size: int
    examples_per_training_step: int
    reported_steps: int | None
    reported_hours: float
    reported_gpus: int
    gpu: str
    gpu_tdp_watts: float
    dataset: str
    reference_params: tuple[tuple[str, int], ...]
    reference_macs_per_forward: float
    stage_hours: tuple[tuple[str, float], ...] = ()
    notes: str = ""

    @property
    def audio_seconds_per_forward(self) -> float:
        """Seconds of audio one inference call produces."""
        return self.audio_samples_per_forward / self.sample_rate

    @property
    def reported_kwh(self) -> float:
        """The seed paper's estimate: TDP x GPUs x hours (Table 1)."""
        return self.gpu_tdp_watts * self.reported_gpus * self.reported_hours / 1000.0

    @property
    def params(self) -> dict[str, int]:
        return dict(self.reference_params)


SPECS: dict[str, ZooSpec] = {
    "samplernn": ZooSpec(
        name="samplernn",
        title="SampleRNN (Mehri et al., ICLR 2017), 3-tier BEST_3TIER",
        sample_rate=16_000,
        audio_samples_per_forward=8,  # one top-tier period per call; autoregressive
        batch_size=128,
        examples_per_training_step=128,  # 128 chunks of 512 samples (1/250 of an 8-s sequence each)
        reported_steps=None,
        reported_hours=168.0,
        reported_gpus=1,
        gpu="GeForce GTX TITAN X",
        gpu_tdp_watts=250.0,
        dataset="Blizzard 2013 / Onomatopoeia / Music (Beethoven piano sonatas), 16 kHz",
        reference_params=(("trained", 18_744_832),),
        reference_macs_per_forward=8 * 8.00e6,  # 8.00 M MACs per sample x 8 samples
        notes="No iteration count is published; the code stops after 72 h of pure train_fn time, the seed "
        "paper's 168 h is 'about one week' of wall clock. Measure s/step and multiply by the hours.",
    ),
    "sing": ZooSpec(
        name="sing",
        title="SING (Defossez et al., NeurIPS 2018), L1 spectral loss",
        sample_rate=16_000,
        audio_samples_per_forward=65_024,  # a 4-s note + 512 samples of padding per side
        batch_size=256,
        examples_per_training_step=256,
        reported_steps=None,
        reported_hours=52.0,
        reported_gpus=4,
        gpu="Tesla P100",
        gpu_tdp_watts=250.0,
        dataset="NSynth train split re-split 80/10/10 by (instrument, pitch), ~231k training notes",
        reference_params=(("generation", 63_747_929), ("encoder", 38_285_440)),
        reference_macs_per_forward=16.54e9,
        stage_hours=(("autoencoder", 12.0), ("sequence", 10.0), ("finetune", 30.0)),
        notes="Three stages of 50, 50 and 20 epochs; ~904 steps per epoch at batch 256 if the split has ~231k "
        "notes [uncertain], i.e. ~45.2k, ~45.2k (x 9 truncated-BPTT optimiser steps) and ~18.1k steps.",
    ),
    "wavegan": ZooSpec(
        name="wavegan",
        title="WaveGAN (Donahue et al., ICLR 2019), WGAN-GP, phase shuffle 2, d = 64",
        sample_rate=16_000,
        audio_samples_per_forward=16_384,
        batch_size=64,
        examples_per_training_step=5 * 64,
        reported_steps=200_000,
        reported_hours=96.0,
        reported_gpus=1,
        gpu="Tesla P100",
        gpu_tdp_watts=250.0,
        dataset="SC09 (Speech Commands digits), 18,620 training utterances, 16 kHz",
        reference_params=(("generator", 19_065_345), ("discriminator", 17_427_969)),
        reference_macs_per_forward=0.847e9,
        notes="200k generator iterations (each with 5 critic updates) in 4 days, from the paper's protocol "
        "[uncertain: paper text not verified]; 200k x 5 x 64 / 18,620 = 3,437 epochs.",
    ),
    "gansynth": ZooSpec(
        name="gansynth",
        title="GANSynth (Engel et al., ICLR 2019), IF-Mel + H, progressive",
        sample_rate=16_000,
        audio_samples_per_forward=64_000,
        batch_size=8,
        examples_per_training_step=8,
        reported_steps=1_375_000,
        reported_hours=108.0,
        reported_gpus=1,
        gpu="Tesla V100",
        gpu_tdp_watts=300.0,
        dataset="NSynth acoustic instruments, MIDI 24-84 (TFDS gansynth_subset: 60,788 notes)",
        reference_params=(("generator", 7_311_246), ("discriminator", 6_831_230)),
        reference_macs_per_forward=14.14e9,
        notes="11 M images at batch 8; progressive growing means only ~4.65 M full-resolution-equivalent "
        "images, so steps x the final-stage step cost over-counts training compute.",
    ),
    "flowavenet": ZooSpec(
        name="flowavenet",
        title="FloWaveNet (Kim et al., ICML 2019), 8 blocks x 6 flows",
        sample_rate=22_050,
        audio_samples_per_forward=15_872,  # the training chunk; inference takes any multiple of 256
        batch_size=8,
        examples_per_training_step=8,
        reported_steps=700_000,
        reported_hours=272.0,
        reported_gpus=1,
        gpu="Tesla V100",
        gpu_tdp_watts=300.0,
        dataset="LJSpeech, 22,050 Hz, 11,790 training clips",
        reference_params=(("total", 182_644_788),),
        reference_macs_per_forward=8.80e6 * 15_872,  # 8.80 M MACs per sample
        notes="11.3 GPU days = 271.2 h (Table 1 says 272 h); 700k iterations at the paper's 0.714 it/s.",
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(SPECS)

_CLASSES: dict[str, tuple[Callable[..., ZooModel], type]] = {
    "samplernn": (SampleRNN, SampleRNNConfig),
    "sing": (SING, SINGConfig),
    "wavegan": (WaveGAN, WaveGANConfig),
    "gansynth": (GANSynth, GANSynthConfig),
    "flowavenet": (FloWaveNet, FloWaveNetConfig),
}


def _key(name: str) -> str:
    key = name.lower() if isinstance(name, str) else None
    if key not in SPECS:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return key


def get_spec(name: str) -> ZooSpec:
    """The reported figures of ``name`` (case-insensitive)."""
    return SPECS[_key(name)]


def build(name: str, *, width_scale: float = 1.0, tiny: bool = False, device: Device = None) -> ZooModel:
    """Build the replica of ``name``, its parameters created directly on ``device``.

    ``device="meta"`` gives a full-size model with shapes only (no memory), which is how
    parameters and costs of the big models are counted. ``tiny=True`` gives the model's tiny
    preset (real layer structure, small widths and batch) for CPU smoke tests; it cannot be
    combined with ``width_scale``, which scales channel widths of the paper configuration.
    """
    model_cls, config_cls = _CLASSES[_key(name)]
    if width_scale <= 0:
        raise ValueError(f"width_scale must be > 0, got {width_scale}")
    if tiny and width_scale != 1.0:
        raise ValueError("pass either tiny=True or width_scale, not both")
    config = config_cls.tiny() if tiny else config_cls().scaled(width_scale) if width_scale != 1.0 else config_cls()
    with torch.device(device if device is not None else "cpu"):
        return model_cls(config)


def make_inputs(model: ZooModel, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
    """Inputs of one inference call ``model(*inputs)``."""
    return model.make_inputs(batch, device)


def make_batch(
    model: ZooModel, batch: int | None = None, device: Device = None, stage: str | None = None
) -> tuple[Tensor, ...]:
    """Stand-in training data for one step (``batch=None``: the model's configured batch)."""
    return model.make_batch(batch, device, stage=stage)


def training_step(model: ZooModel, batch: tuple[Tensor, ...], stage: str | None = None) -> dict[str, Tensor]:
    """One original training step (forward, backward, optimiser step(s)); returns detached losses."""
    return model.training_step(*batch, stage=stage)
