"""Table 1's models metered on this machine: joules per second of generated audio, per training
step and per training example, with the meter's method and interval and the counted FLOPs.

The models are the architecture replicas of :mod:`waveflow.zoo` (**not trained generators**: their
audio is noise and is never shown), so the numbers are the cost of the architectures, not of any
published checkpoint.

* :func:`measure_zoo_inference` meters inference calls; SampleRNN, autoregressive, is timed on a
  short clip and **extrapolated** (every second is the same sequence of calls).
* :func:`zoo_batch_sweep` finds the energy-optimal batch (:func:`waveflow.analysis.sweep.mark_optimum`).
* :func:`measure_zoo_training` meters training steps and reports joules per step and per training
  example, and, for a full-size model, the energy of the whole reported schedule on this machine.
* :func:`measure_zoo` runs notebook 02's measurements for several models.

Every energy number says how it was obtained (``measured:...``/``estimated:...`` from
:class:`~waveflow.energy.EnergyMeter`); counted FLOPs come from :mod:`~waveflow.experiments.zoo_count`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis.sweep import mark_optimum
from ..devices import resolve_device
from ..energy import J_PER_KWH, EnergyMeter, EnergyRecord, append_record
from ..zoo import FloWaveNetConfig, SampleRNNConfig, ZooModel, build, get_spec
from .zoo_count import GENERATOR_PART, REPLICA_NOTE, flops_per_audio_second, flops_per_step, schedule_steps

#: Models whose inference call takes any length (SampleRNN: whole 8-sample top-tier frames; FloWaveNet:
#: whole 256-sample hops); the other three generate a fixed clip per call.
VARIABLE_LENGTH = {"samplernn": SampleRNNConfig().big_frame_size, "flowavenet": FloWaveNetConfig().hop}
DEFAULT_CLIP_S = {"samplernn": 0.01, "flowavenet": None}  # None: the 15,872-sample training chunk


# ----------------------------------------------------------------------------------------------
# the meter's record
def _bounds(record: EnergyRecord) -> tuple[float, float]:
    """``(low, high)`` joules with PUE. A measurement is its own bound; an estimate from a meter that
    predates intervals has none (NaN)."""
    low, high = getattr(record, "energy_j_low", math.nan), getattr(record, "energy_j_high", math.nan)
    if math.isnan(low) or math.isnan(high):
        if "estimated:" in record.methods_label():
            return math.nan, math.nan
        low = high = record.energy_j
    return low * record.pue, high * record.pue


def _notes(record: EnergyRecord) -> str:
    """The meter's notes, plus a warning when the window was too short for the meter to see any energy."""
    notes = list(record.notes)
    if record.energy_j_pue <= 0:
        notes.append(f"0 J in {record.wall_s:.3g} s: below the meter's resolution; measure more calls or steps")
    return " | ".join(notes)


def _log(record: EnergyRecord, log: bool | str | Path) -> None:
    """Append to the energy log: True = the default ``build/results/energy_log.csv``, False = not at all."""
    if log is not False:
        append_record(record, None if log is True else log)


# ----------------------------------------------------------------------------------------------
# inputs and models
def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return value


def _model(model: str | ZooModel, width_scale: float, tiny: bool, device: torch.device) -> ZooModel:
    if isinstance(model, ZooModel):
        return model.to(device)
    return build(model, width_scale=width_scale, tiny=tiny, device=device)


def _variant(model: ZooModel) -> str:
    """``full size`` when the generator has the paper's parameter count, else ``reduced``."""
    spec = get_spec(model.name)
    part = GENERATOR_PART[spec.name]
    return "full size" if model.parameter_counts()[part] == spec.params.get(part) else "reduced (not the paper's size)"


def clip_samples(name: str, clip_s: float | None) -> int | None:
    """Samples per example for a variable-length model's inference call (None: fixed or default).

    Raises ``ValueError`` for a clip on a fixed-length model, and for a clip shorter than the
    model's unit (SampleRNN's 8-sample top-tier frame, FloWaveNet's 256-sample hop).
    """
    spec = get_spec(name)
    if clip_s is None:
        return None
    if spec.name not in VARIABLE_LENGTH:
        raise ValueError(
            f"clip_s: {spec.name} generates a fixed {spec.audio_seconds_per_forward:g} s per call; "
            f"a clip length applies only to {', '.join(VARIABLE_LENGTH)}"
        )
    unit = VARIABLE_LENGTH[spec.name]
    ok = isinstance(clip_s, (int, float)) and not isinstance(clip_s, bool) and math.isfinite(clip_s)
    n = int(round(clip_s * spec.sample_rate / unit)) * unit if ok else 0
    if n < unit:
        raise ValueError(
            f"clip_s={clip_s!r}: {spec.name} needs at least one {unit}-sample "
            f"{'top-tier frame' if spec.name == 'samplernn' else 'hop'} ({unit / spec.sample_rate:.2e} s)"
        )
    return n


def _infer(model: ZooModel, batch: int, n: int | None, device: torch.device) -> int:
    """One inference call; returns the samples it produced per example."""
    if model.name == "samplernn":
        return int(model.generate(batch, n or VARIABLE_LENGTH["samplernn"], device=device).shape[-1])
    if model.name == "flowavenet":
        frames = (n or model.config.chunk_samples) // model.config.hop
        return int(model(*model.make_inputs(batch, device, n_frames=frames)).shape[-1])
    return int(model(*model.make_inputs(batch, device)).shape[-1])


# ----------------------------------------------------------------------------------------------
# inference
def measure_zoo_inference(
    model: str | ZooModel,
    *,
    batch: int = 1,
    calls: int = 1,
    clip_s: float | None = None,
    width_scale: float = 1.0,
    tiny: bool = False,
    device: str = "cpu",
    warmup: bool = True,
    seed: int = 0,
    intensity: str | None = None,
    pue: str | float | None = None,
    log: bool | str | Path = True,
) -> dict[str, Any]:
    """Meter ``calls`` inference calls at ``batch`` and return one tidy row.

    Args:
        model: a name of :data:`waveflow.zoo.MODEL_NAMES` (built at ``width_scale``/``tiny``) or a built replica.
        batch, calls: examples per call and calls metered (>= 1 each).
        clip_s: seconds per example for SampleRNN (default 0.01 s) and FloWaveNet (default its 15,872-sample
            chunk); an error for the fixed-length models.
        warmup: one unmeasured call first (allocation, kernel choice; the shortest clip for the variable ones).
        log: the energy log as in :mod:`waveflow.experiments` (True: the default file; a path; False).

    ``j_per_audio_s`` is the metered energy (with PUE) over the audio produced; for SampleRNN it is
    labelled extrapolated, from a short clip to a second.
    """
    name = model.name if isinstance(model, ZooModel) else get_spec(model).name
    _positive_int(batch, f"{name} inference batch")
    _positive_int(calls, f"{name} inference calls")
    n = clip_samples(name, clip_s if clip_s is not None else DEFAULT_CLIP_S.get(name))
    dev = resolve_device(device)
    torch.manual_seed(seed)
    net = _model(model, width_scale, tiny, dev).eval()
    with torch.no_grad():
        if warmup:
            _infer(net, batch, VARIABLE_LENGTH.get(name), dev)
        with EnergyMeter(f"zoo inference {name} b{batch}", intensity=intensity, pue=pue, warn=False) as meter:
            samples = sum(_infer(net, batch, n, dev) for _ in range(calls))
    record = meter.record
    _log(record, log)
    return _inference_row(name, net, batch, calls, samples, record)


def _inference_row(
    name: str, net: ZooModel, batch: int, calls: int, samples: int, record: EnergyRecord
) -> dict[str, Any]:
    """The tidy row of :func:`measure_zoo_inference`: ``calls`` calls of ``net`` at ``batch`` produced
    ``samples`` samples per example in all, metered into ``record``."""
    seconds = batch * samples / net.sample_rate
    low, high = _bounds(record)
    flops = flops_per_audio_second(net) * seconds
    per_example = samples / calls / net.sample_rate
    label = (
        f"extrapolated from a {per_example:.4g} s clip"  # autoregressive: every second repeats the same calls
        if name == "samplernn"
        else f"measured over {seconds:.4g} s of audio"
    )
    return {
        "model": name,
        "variant": _variant(net),
        "batch": batch,
        "calls": calls,
        "clip_s": per_example,
        "audio_s": seconds,
        "wall_s": record.wall_s,
        "rtf": record.wall_s / seconds,
        "energy_j_pue": record.energy_j_pue,
        "energy_j_pue_low": low,
        "energy_j_pue_high": high,
        "energy_method": record.methods_label(),
        "hardware": record.hardware_label(),
        "j_per_audio_s": record.energy_j_pue / seconds,
        "j_per_audio_s_low": low / seconds,
        "j_per_audio_s_high": high / seconds,
        "j_per_audio_s_label": f"{label} ({record.methods_label()})",
        "gflop_per_audio_s": flops / seconds / 1e9,
        "achieved_gflops": flops / 1e9 / record.wall_s,
        "j_per_gflop": record.energy_j_pue / (flops / 1e9),
        "note": REPLICA_NOTE,
        "notes": _notes(record),
    }


def zoo_batch_sweep(
    model: str | ZooModel, batch_sizes: Iterable[int], examples: int | None = None, **kwargs: Any
) -> pd.DataFrame:
    """Energy per audio second at each batch size, about ``examples`` (default the largest batch)
    examples each; ``optimal`` marks the lowest, ``within_noise`` those within
    :data:`waveflow.analysis.sweep.SWEEP_NOISE` of it."""
    sizes = sorted({_positive_int(b, "zoo_batch_sweep batch size") for b in batch_sizes})
    if not sizes:
        raise ValueError("zoo_batch_sweep: batch_sizes is empty; expected at least one positive integer")
    total = _positive_int(examples if examples is not None else sizes[-1], "zoo_batch_sweep examples")
    if not isinstance(model, ZooModel):  # build once, not once per batch size
        dev = resolve_device(kwargs.get("device", "cpu"))
        model = _model(model, kwargs.pop("width_scale", 1.0), kwargs.pop("tiny", False), dev)
    rows = [measure_zoo_inference(model, batch=b, calls=-(-total // b), **kwargs) for b in sizes]
    return mark_optimum(pd.DataFrame(rows))


# ----------------------------------------------------------------------------------------------
# training
def measure_zoo_training(
    model: str | ZooModel,
    *,
    steps: int = 1,
    warmup_steps: int = 1,
    batch: int | None = None,
    stage: str | None = None,
    width_scale: float = 1.0,
    tiny: bool = False,
    device: str = "cpu",
    seed: int = 0,
    intensity: str | None = None,
    pue: str | float | None = None,
    log: bool | str | Path = True,
) -> dict[str, Any]:
    """Meter ``steps`` training steps (after ``warmup_steps`` unmeasured ones) and return one tidy row.

    A step is the original code's (:func:`waveflow.zoo.training_step`) on stand-in data of the paper's
    shapes. ``batch`` defaults to the configuration's; energy per example is energy / (steps x
    examples per step), and ``j_per_paper_step`` scales it to the paper's examples per step, labelled
    extrapolated when the batch differs (cost per example is not constant in the batch on every
    device, so the label matters). When the schedule's steps are known (:func:`schedule_steps`) the
    row also carries the energy of the whole schedule on this machine, extrapolated.
    """
    name = model.name if isinstance(model, ZooModel) else get_spec(model).name
    _check_training_args(name, steps, warmup_steps, batch)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    net = _model(model, width_scale, tiny, dev).train()
    stage = net._stage(stage)
    b = net.config.batch_size if batch is None else batch
    data = net.make_batch(b, dev, stage=stage)
    for _ in range(warmup_steps):
        net.training_step(*data, stage=stage)
    with EnergyMeter(f"zoo train {name} {stage} b{b}", intensity=intensity, pue=pue, warn=False) as meter:
        for _ in range(steps):
            net.training_step(*data, stage=stage)
    record = meter.record
    _log(record, log)
    return _training_row(name, net, stage, b, steps, warmup_steps, record)


def _check_training_args(name: str, steps: int, warmup_steps: int, batch: int | None) -> None:
    """Raise ``ValueError`` for a step count, warm-up count or batch that :func:`measure_zoo_training`
    cannot run, before any model is built."""
    _positive_int(steps, f"{name} training steps")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"{name} warmup_steps: expected an integer >= 0, got {warmup_steps!r}")
    if batch is not None:
        _positive_int(batch, f"{name} training batch")


def _training_row(
    name: str, net: ZooModel, stage: str, b: int, steps: int, warmup_steps: int, record: EnergyRecord
) -> dict[str, Any]:
    """The tidy row of :func:`measure_zoo_training`: ``steps`` steps of ``stage`` at batch ``b`` metered
    into ``record``, per step, per example and per paper step, scaled to the reported schedule when
    ``net`` is full size and the schedule's steps are known."""
    spec = get_spec(name)
    per_batch = spec.examples_per_training_step // spec.batch_size  # WaveGAN: 5 critic batches per step
    examples = steps * per_batch * b
    paper_examples = spec.examples_per_training_step
    low, high = _bounds(record)
    flops = flops_per_step(net, stage, b) * steps
    full = _variant(net) == "full size"
    sched = schedule_steps(name).get(stage) if full else None
    scaled = "measured" if b == spec.batch_size and full else f"extrapolated from batch {b}"
    row = {
        "model": name,
        "variant": _variant(net),
        "stage": stage,
        "batch": b,
        "paper_batch": spec.batch_size,
        "steps": steps,
        "warmup_steps": warmup_steps,
        "examples": examples,
        "wall_s": record.wall_s,
        "s_per_step": record.wall_s / steps,
        "energy_j_pue": record.energy_j_pue,
        "energy_j_pue_low": low,
        "energy_j_pue_high": high,
        "energy_method": record.methods_label(),
        "hardware": record.hardware_label(),
        "j_per_step": record.energy_j_pue / steps,
        "j_per_step_low": low / steps,
        "j_per_step_high": high / steps,
        "j_per_example": record.energy_j_pue / examples,
        "j_per_example_low": low / examples,
        "j_per_example_high": high / examples,
        "j_per_paper_step": record.energy_j_pue / examples * paper_examples,
        "j_per_paper_step_low": low / examples * paper_examples,
        "j_per_paper_step_high": high / examples * paper_examples,
        "j_per_paper_step_label": f"{scaled} ({record.methods_label()})",
        "gflop_per_step": flops / steps / 1e9,
        "achieved_gflops": flops / 1e9 / record.wall_s,
        "j_per_gflop": record.energy_j_pue / (flops / 1e9),
        "schedule_steps": sched if sched is not None else math.nan,
        "schedule_kwh": math.nan,
        "schedule_kwh_low": math.nan,
        "schedule_kwh_high": math.nan,
        "note": REPLICA_NOTE,
        "notes": _notes(record),
    }
    if sched is not None:
        for suffix in ("", "_low", "_high"):
            row[f"schedule_kwh{suffix}"] = row[f"j_per_paper_step{suffix}"] * sched / J_PER_KWH
    return row


# ----------------------------------------------------------------------------------------------
# notebook 02
def measure_zoo(
    names: Iterable[str],
    *,
    sweep_batch_sizes: Iterable[int] = (1, 2),
    clip_s: float | None = None,
    train_steps: int = 1,
    train_warmup_steps: int = 1,
    train_batch: int | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 02's measurements: per model a batch sweep (batch 1 included) and a training step.

    ``clip_s`` goes to the variable-length models only; ``train_batch`` caps the training batch at
    min(paper batch, train_batch) (None: the paper's). Returns ``(inference rows, training rows)``.
    """
    keys = [get_spec(n).name for n in names]
    sizes = sorted({1, *sweep_batch_sizes})
    if train_batch is not None:
        _positive_int(train_batch, "train_batch")
    items: Iterable[str] = keys
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(keys, desc="zoo energy", unit="model")
    inference, training = [], []
    for key in items:
        clip = clip_s if key in VARIABLE_LENGTH else None
        inference.append(zoo_batch_sweep(key, sizes, clip_s=clip, **kwargs))
        batch = None if train_batch is None else min(train_batch, get_spec(key).batch_size)
        training.append(
            measure_zoo_training(key, steps=train_steps, warmup_steps=train_warmup_steps, batch=batch, **kwargs)
        )
    if not keys:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(inference, ignore_index=True), pd.DataFrame(training)
