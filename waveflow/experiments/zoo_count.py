"""Counted FLOPs of the Table 1 models, and the training schedules they are multiplied by.

:mod:`waveflow.zoo` holds architecture replicas of SampleRNN, SING, WaveGAN, GANSynth and
FloWaveNet (exact parameter counts; **not trained generators**). Their cost per inference call and
per training step is counted here on the meta device (``FlopCounterMode``: matrix products and
convolutions, FLOPs = 2 x MACs) and cached, because the full-size counts take seconds and both the
measurements (:mod:`~waveflow.experiments.zoo_measure`) and the tables
(:mod:`~waveflow.experiments.zoo_tables`) ask for them again. :func:`schedule_steps` gives each
model's reported schedule in steps per training stage, which both of them scale by.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..zoo import ZooModel, build, forward_cost, get_spec, training_step_cost

REPLICA_NOTE = "architecture replicas for cost measurement, not trained generators"

#: Which part of ``parameter_counts()`` generates audio, and which other network training needs.
GENERATOR_PART = {
    "samplernn": "trained",
    "sing": "generation",
    "wavegan": "generator",
    "gansynth": "generator",
    "flowavenet": "total",
}
OTHER_PART = {"sing": "encoder", "wavegan": "discriminator", "gansynth": "discriminator"}

#: SING publishes epochs, not steps: ceil(~231,364 training notes / 256) = 904 batches per epoch
#: [uncertain: the re-split NSynth size was not computed]; 50, 50 and 20 epochs per stage.
SING_BATCHES_PER_EPOCH = 904
SING_EPOCHS = {"autoencoder": 50, "sequence": 50, "finetune": 20}


# ----------------------------------------------------------------------------------------------
# counting (meta device, cached: the full-size counts take seconds and every table asks again)
def _meta_copy(model: ZooModel) -> ZooModel:
    with torch.device("meta"):
        return type(model)(model.config)


@functools.lru_cache(maxsize=32)
def _forward_flops(cls: type, config: Any) -> tuple[float, int]:
    """``(FLOPs, output samples)`` of one batch-1 inference call of the model ``cls(config)``."""
    with torch.device("meta"):
        meta = cls(config)
    cost = forward_cost(meta, batch=1)
    return cost.flops, int(cost.output_shape[-1])


@functools.lru_cache(maxsize=64)
def _step_flops(cls: type, config: Any, stage: str | None, batch: int | None) -> float:
    """FLOPs of one training step (forward, backward, every update it makes) of ``cls(config)``."""
    with torch.device("meta"):
        meta = cls(config)
    return training_step_cost(meta, stage=stage, batch=batch).flops


def flops_per_audio_second(model: ZooModel) -> float:
    """Counted inference FLOPs per second of audio (one example) of ``model``'s configuration."""
    flops, samples = _forward_flops(type(model), model.config)
    return flops / (samples / model.sample_rate)


def flops_per_step(model: ZooModel, stage: str | None = None, batch: int | None = None) -> float:
    """Counted FLOPs of one training step of ``model``'s configuration (``batch=None``: its own)."""
    return _step_flops(type(model), model.config, model._stage(stage), batch)


@functools.lru_cache(maxsize=8)
def _full(name: str) -> ZooModel:
    """The full-size replica on meta, built once per process (counting never changes it)."""
    return build(name, device="meta")


# ----------------------------------------------------------------------------------------------
# the reported schedules
def schedule_steps(name: str) -> dict[str, float]:
    """Steps of the reported schedule by training stage ({} when none is published: SampleRNN)."""
    spec = get_spec(name)
    if spec.name == "sing":
        return {stage: SING_BATCHES_PER_EPOCH * epochs for stage, epochs in SING_EPOCHS.items()}
    if spec.reported_steps is None:
        return {}
    return {_full(name)._stage(None): float(spec.reported_steps)}
