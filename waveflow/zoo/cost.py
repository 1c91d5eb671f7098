"""Multiply-accumulates of the Table 1 replicas, per inference call and per training step.

Counted with PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` on full-size models built
on the ``meta`` device (shapes only: a 183 M-parameter FloWaveNet costs no memory). The counter
sees matrix products and convolutions only (and their backward), not activations,
normalisation, FFTs, losses or optimiser updates; it reports FLOPs = 2 x MACs, and both are
given here. Transposed convolutions count input positions x kernel x C_in x C_out.

Recurrent layers: the counter cannot see inside fused RNN kernels (``aten::_lstm`` and
friends on CPU/CUDA). Here every recurrence is decomposed into explicit matrix products:
SampleRNN's GRU is written that way on every device, and SING's ``nn.LSTM`` is a
:class:`~waveflow.zoo.sing.CountableLSTM`, which on meta runs as equal-cost matrix products
(checked against the closed form in the tests). :func:`count_macs` refuses a model holding
any other ``nn.RNNBase`` so that an invisible recurrence can never be silently undercounted.

Per second of audio: ``macs / audio seconds of one call``. For SampleRNN one call generates
one top-tier period (8 samples: 1 top-tier step, 4 middle-tier steps, 8 sample-MLP steps), so
its per-second cost is the per-sample cost x 16,000 samples, exact for the autoregressive loop
because every second is the same sequence of calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import ZooModel
from .gansynth import GANSynth
from .registry import MODEL_NAMES, build, get_spec
from .sing import CountableLSTM


def _check_countable(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.RNNBase) and not isinstance(module, CountableLSTM):
            raise TypeError(
                f"{type(module).__name__} at {name!r} runs as a fused kernel that FlopCounterMode "
                "cannot see; decompose it into matrix products before counting"
            )


def count_macs(model: ZooModel, fn: Callable[[], object], *, grad: bool = True) -> float:
    """MACs of everything ``fn()`` runs, as counted by ``FlopCounterMode`` (FLOPs / 2)."""
    _check_countable(model)
    with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(grad):
        fn()
    return counter.get_total_flops() / 2.0


@dataclass(frozen=True)
class ForwardCost:
    """Cost of one inference call ``model(*inputs)`` on ``batch`` examples.

    ``macs`` covers the whole call (for GANSynth also the mel inversion matrix products);
    ``network_macs`` only the neural network (the figure ``waveflow/zoo/REFERENCES.md`` derives);
    ``output_shape`` is the shape of the audio the call returned, (batch, samples).
    """

    name: str
    batch: int
    macs: float
    network_macs: float
    audio_samples: int
    sample_rate: int
    output_shape: tuple[int, ...] = ()

    @property
    def flops(self) -> float:
        return 2.0 * self.macs

    @property
    def audio_seconds(self) -> float:
        """Audio produced per example by one call."""
        return self.audio_samples / self.sample_rate

    @property
    def macs_per_audio_second(self) -> float:
        """MACs to generate one second of audio (one example)."""
        return self.macs / self.batch / self.audio_seconds


@dataclass(frozen=True)
class TrainingStepCost:
    """Cost of one original training step (forward, backward and any repeated updates)."""

    name: str
    stage: str
    batch: int
    macs: float

    @property
    def flops(self) -> float:
        return 2.0 * self.macs


def _meta_model(model: ZooModel | str, width_scale: float) -> ZooModel:
    """A full-size model on meta: built from a name, or the given model if it is already on meta."""
    if isinstance(model, ZooModel):
        if model.device.type != "meta":
            raise ValueError(
                f"count costs on a meta-device model (got one on {model.device}); "
                "build it with build(name, device='meta')"
            )
        return model
    return build(model, width_scale=width_scale, device="meta")


def forward_cost(model: ZooModel | str, *, batch: int = 1, width_scale: float = 1.0) -> ForwardCost:
    """MACs of one inference call of the full-size (or width-scaled) model, counted on meta.

    ``model`` is a name or a model already built on meta (``build(name, device="meta")``).
    """
    model = _meta_model(model, width_scale)
    spec = get_spec(model.name)
    inputs = model.make_inputs(batch)
    outputs = []
    macs = count_macs(model, lambda: outputs.append(model(*inputs)), grad=False)
    network = macs
    if isinstance(model, GANSynth):  # the network alone, without the mel inversion and iSTFT
        network = count_macs(model, lambda: model.generator(*inputs), grad=False)
    return ForwardCost(
        spec.name, batch, macs, network, spec.audio_samples_per_forward, spec.sample_rate, tuple(outputs[0].shape)
    )


def training_step_cost(
    model: ZooModel | str, *, stage: str | None = None, batch: int | None = None, width_scale: float = 1.0
) -> TrainingStepCost:
    """MACs of one training step at the paper's batch (or ``batch``), counted on meta.

    ``model`` is a name or a model on meta; a given model's optimiser state is created by
    the step, so pass a fresh one if that matters.
    """
    model = _meta_model(model, width_scale)
    stage = model._stage(stage)
    data = model.make_batch(batch, stage=stage)
    macs = count_macs(model, lambda: model.training_step(*data, stage=stage))
    used_batch = model.config.batch_size if batch is None else batch
    return TrainingStepCost(model.name, stage, used_batch, macs)


def cost_table(names: tuple[str, ...] = MODEL_NAMES, training: bool = True) -> list[dict[str, object]]:
    """One row per model (and per training stage): inference and training-step MACs with the
    reported schedule, ready for a DataFrame. Full-size counts take a few seconds in total."""
    rows = []
    for name in names:
        spec = get_spec(name)
        model = build(name, device="meta")
        fwd = forward_cost(model)
        row: dict[str, object] = {
            "model": spec.name,
            "sample_rate": spec.sample_rate,
            "audio_seconds_per_forward": spec.audio_seconds_per_forward,
            "macs_per_forward": fwd.macs,
            "network_macs_per_forward": fwd.network_macs,
            "reference_macs_per_forward": spec.reference_macs_per_forward,
            "macs_per_audio_second": fwd.macs_per_audio_second,
            "reported_steps": spec.reported_steps,
            "reported_hours": spec.reported_hours,
            "reported_kwh": spec.reported_kwh,
        }
        if not training:
            rows.append(row)
            continue
        for stage in model.training_stages:
            step = training_step_cost(model, stage=stage)
            rows.append(
                {
                    **row,
                    **{k: v for k, v in asdict(step).items() if k in ("stage", "batch")},
                    "macs_per_training_step": step.macs,
                }
            )
    return rows
