"""Table 1's five models on this machine: energy per second of audio and per training step, and a
bottom-up check of the paper's "TDP x hours" estimates.

The paper estimates the training energy of SampleRNN, SING, WaveGAN, GANSynth and FloWaveNet from
the reported GPU, GPU count and hours. :mod:`waveflow.zoo` holds architecture replicas of the five
(exact parameter counts; **not trained generators**: their audio is noise and is never shown), so
their cost can be measured instead of assumed:

* :func:`measure_zoo_inference` meters inference calls and reports joules per second of generated
  audio with the meter's method and interval, plus counted FLOPs; SampleRNN, autoregressive, is
  timed on a short clip and **extrapolated** (every second is the same sequence of calls);
  :func:`zoo_batch_sweep` finds the energy-optimal batch; :func:`measure_zoo_training` meters
  training steps and reports joules per step and per training example.
* :func:`schedule_table` multiplies each reported schedule (steps) by the counted FLOPs of one
  step, and :func:`implied_utilisation` divides by what the reported GPUs could do at their fp32
  peak (``data/hardware/gpus.csv``) in the reported hours. A fraction far above what well-tuned
  training reaches means the hours (or the steps) cannot both be right.
* ``python -m waveflow zoo`` prints the counted costs with the reported schedule, WaveFlow WF2 as
  the reference row.

Counted FLOPs cover matrix products and convolutions only (``FlopCounterMode``, FLOPs = 2 x MACs),
so an implied utilisation is a lower bound on the real arithmetic rate. Every energy number says
how it was obtained (``measured:...``/``estimated:...`` from :class:`~waveflow.energy.EnergyMeter`).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis.sweep import mark_optimum
from ..data import DEFAULT_SEGMENT
from ..devices import resolve_device
from ..energy import J_PER_KWH, EnergyMeter, EnergyRecord, append_record, hardware
from ..measures.flops import count as count_flops
from ..model import PAPER, parameter_count
from ..train import PAPER_BATCH, PAPER_STEPS
from ..zoo import (
    MODEL_NAMES,
    FloWaveNetConfig,
    SampleRNNConfig,
    ZooModel,
    build,
    forward_cost,
    get_spec,
    training_step_cost,
)

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
#: Models whose inference call takes any length (SampleRNN: whole 8-sample top-tier frames; FloWaveNet:
#: whole 256-sample hops); the other three generate a fixed clip per call.
VARIABLE_LENGTH = {"samplernn": SampleRNNConfig().big_frame_size, "flowavenet": FloWaveNetConfig().hop}
DEFAULT_CLIP_S = {"samplernn": 0.01, "flowavenet": None}  # None: the 15,872-sample training chunk

#: The reference row: WaveFlow WF2 (h = 16, r = 64), trained by Douwes et al. on 4 TITAN V for 3 M
#: steps of 8 x 16,000 samples (their section 5.1). They measured its energy and published no hours.
REFERENCE = "WF2"
REFERENCE_STEPS = PAPER_STEPS[PAPER[REFERENCE].config.res_channels]
REFERENCE_GPUS = 4
REFERENCE_CLIP_S = 10.0  # the paper's E_gen clips: 10 s at 22.05 kHz

#: SING publishes epochs, not steps: ceil(~231,364 training notes / 256) = 904 batches per epoch
#: [uncertain: the re-split NSynth size was not computed]; 50, 50 and 20 epochs per stage.
SING_BATCHES_PER_EPOCH = 904
SING_EPOCHS = {"autoencoder": 50, "sequence": 50, "finetune": 20}
#: GANSynth grows progressively: weighting its 13 stages by images, ~4.65 M of the 11 M images cost
#: as much as a full-resolution image, so steps x the final-stage cost over-counts by 11 / 4.65.
GANSYNTH_FULL_RESOLUTION_FRACTION = 4.65 / 11.0

#: Above this fraction of fp32 peak the reported hours are implausible for the counted work: the
#: best-tuned large training runs reach ~46 % model-FLOPs utilisation (PaLM, Chowdhery et al. 2022).
UTILISATION_MAX_PLAUSIBLE = 0.5
#: Below this, the hours are dominated by something other than the counted matrix work (evaluation,
#: sampling, data loading, idle time) or the step count is too low.
UTILISATION_LOW = 0.05


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
# `python -m waveflow zoo`
ROW_COLUMNS = (
    "model",
    "params_generator",
    "params_other",
    "sample_rate",
    "audio_s_per_forward",
    "inference_gflop_per_audio_s",
    "training_gflop_per_step",
    "examples_per_step",
    "reported_steps",
    "reported_hours",
    "reported_gpus",
)


def zoo_row(name: str) -> dict[str, Any]:
    """Counted cost and reported schedule of one Table 1 model (full size, on meta)."""
    spec, model = get_spec(name), _full(name)
    parts = model.parameter_counts()
    return {
        "model": spec.name,
        "params_generator": parts[GENERATOR_PART[spec.name]],
        "params_other": parts[OTHER_PART[spec.name]] if spec.name in OTHER_PART else 0,
        "sample_rate": spec.sample_rate,
        "audio_s_per_forward": spec.audio_seconds_per_forward,
        "inference_gflop_per_audio_s": flops_per_audio_second(model) / 1e9,
        "training_gflop_per_step": flops_per_step(model) / 1e9,
        "examples_per_step": spec.examples_per_training_step,
        "reported_steps": spec.reported_steps,
        "reported_hours": spec.reported_hours,
        "reported_gpus": spec.reported_gpus,
    }


def reference_row() -> dict[str, Any]:
    """WaveFlow WF2 counted by :func:`waveflow.measures.flops.count`.

    One ``training`` count gives both figures: its forward part is the density pass, whose
    convolution work the cached synthesis repeats exactly (``waveflow.measures.flops``; both are checked
    against the same closed form in ``tests/test_flops.py``), and it takes half the time of two counts.
    """
    config = PAPER[REFERENCE].config
    counted = count_flops(config, "training", REFERENCE)
    step_seconds = PAPER_BATCH * DEFAULT_SEGMENT / 22_050
    params = parameter_count(config)
    return {
        "model": REFERENCE,
        "params_generator": params,
        "params_other": 0,
        "sample_rate": 22_050,
        "audio_s_per_forward": REFERENCE_CLIP_S,
        "inference_gflop_per_audio_s": counted.forward_flops_per_audio_second / 1e9,
        "training_gflop_per_step": counted.flops_per_audio_second * step_seconds / 1e9,
        "examples_per_step": PAPER_BATCH,
        "reported_steps": REFERENCE_STEPS,
        "reported_hours": math.nan,
        "reported_gpus": REFERENCE_GPUS,
    }


def zoo_rows(names: Iterable[str] = MODEL_NAMES, reference: bool = True, progress: bool = False) -> pd.DataFrame:
    """One row per model (:data:`ROW_COLUMNS`), WF2 last when ``reference``; names are checked first."""
    keys = [get_spec(n).name for n in names]  # unknown names fail before any counting
    items: Sequence[str] = keys + ([REFERENCE] if reference else [])
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="counting", unit="model", file=sys.stderr)
    rows = [reference_row() if key == REFERENCE else zoo_row(key) for key in items]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo``."""
    parser.add_argument(
        "--model",
        nargs="+",
        action="extend",
        metavar="NAME",
        help=f"models to show (default: all of {', '.join(MODEL_NAMES)}); WF2 is always the last row",
    )
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")


def run(args: argparse.Namespace) -> int:
    """Print the cost table (counting the full-size models on meta takes a few seconds each)."""
    table = zoo_rows(args.model or MODEL_NAMES, progress=args.format == "table")
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
        return 0
    shown = table.copy()
    for col in ("params_generator", "params_other", "examples_per_step", "reported_gpus", "reported_steps"):
        shown[col] = shown[col].map(lambda v: "-" if pd.isna(v) else f"{int(v):,}")
    for col, fmt in (("audio_s_per_forward", "{:.4g}"), ("inference_gflop_per_audio_s", "{:,.2f}")):
        shown[col] = shown[col].map(fmt.format)
    shown["training_gflop_per_step"] = shown["training_gflop_per_step"].map("{:,.0f}".format)
    shown["reported_hours"] = shown["reported_hours"].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
    print(shown.to_string(index=False))
    print(
        f"Table 1 models: {REPLICA_NOTE}. FLOPs count matrix products and convolutions (2 x MACs) on meta. "
        "A training step is the original code's (WaveGAN: 5 critic updates + 1 generator update; SING: its "
        f"finetune stage). WF2: one forward = a {REFERENCE_CLIP_S:g}-s E_gen clip; 8 x {DEFAULT_SEGMENT:,} samples "
        "per step on 4 TITAN V, hours not published."
    )
    return 0


# ----------------------------------------------------------------------------------------------
# measurement
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
    _positive_int(steps, f"{name} training steps")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"{name} warmup_steps: expected an integer >= 0, got {warmup_steps!r}")
    if batch is not None:
        _positive_int(batch, f"{name} training batch")
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


# ----------------------------------------------------------------------------------------------
# the paper's estimates against the counted work
def schedule_steps(name: str) -> dict[str, float]:
    """Steps of the reported schedule by training stage ({} when none is published: SampleRNN)."""
    spec = get_spec(name)
    if spec.name == "sing":
        return {stage: SING_BATCHES_PER_EPOCH * epochs for stage, epochs in SING_EPOCHS.items()}
    if spec.reported_steps is None:
        return {}
    return {_full(name)._stage(None): float(spec.reported_steps)}


def fp32_peak(gpu: str) -> tuple[float, str]:
    """``(TFLOP/s, source)``: fp32 peak (no tensor cores) of a GPU name, from ``data/hardware/gpus.csv``."""
    key = hardware.lookup_gpu(gpu).key
    table = pd.read_csv(hardware.GPUS_CSV, keep_default_na=False).set_index("key")
    if "fp32_peak_tflops" not in table.columns:
        raise ValueError(f"{hardware.GPUS_CSV}: no fp32_peak_tflops column; expected one per GPU (TFLOP/s)")
    value = table.loc[key, "fp32_peak_tflops"]
    if value == "" or not float(value) > 0:
        raise ValueError(f"{hardware.GPUS_CSV}: GPU {key!r} has fp32_peak_tflops={value!r}; expected TFLOP/s > 0")
    return float(value), str(table.loc[key, "fp32_peak_source"])


def implied_utilisation(training_flop: float, hours: float, n_gpus: int, peak_tflops: float) -> float:
    """Fraction of fp32 peak the reported hours imply: FLOPs / (GPUs x peak FLOP/s x hours x 3600)."""
    if not (hours > 0 and n_gpus >= 1 and peak_tflops > 0):
        raise ValueError(
            f"implied_utilisation: hours={hours!r}, n_gpus={n_gpus!r}, peak_tflops={peak_tflops!r}; expected all > 0"
        )
    return training_flop / (n_gpus * peak_tflops * 1e12 * hours * 3600.0)


def verdict(utilisation: float) -> str:
    """Plausibility of an implied utilisation against :data:`UTILISATION_LOW`/:data:`UTILISATION_MAX_PLAUSIBLE`."""
    if math.isnan(utilisation):
        return "not checkable: no step count published"
    if utilisation > UTILISATION_MAX_PLAUSIBLE:
        return f"implausible: above {UTILISATION_MAX_PLAUSIBLE:.0%} of fp32 peak"
    if utilisation < UTILISATION_LOW:
        return f"low: under {UTILISATION_LOW:.0%}, hours dominated by other work"
    return "plausible"


def schedule_table(names: Iterable[str] = MODEL_NAMES) -> pd.DataFrame:
    """One row per (model, stage): reported steps and hours, counted FLOPs per step and in total,
    and the fp32-peak utilisation they imply (SING's hours are split by stage in the paper)."""
    rows = []
    for name in names:
        spec, model = get_spec(name), _full(name)
        gpu = hardware.lookup_gpu(spec.gpu)
        peak, _ = fp32_peak(spec.gpu)
        steps = schedule_steps(name)
        hours = dict(spec.stage_hours) or {model._stage(None): spec.reported_hours}
        for stage, stage_hours in hours.items():
            n = steps.get(stage, math.nan)
            per_step = flops_per_step(model, stage)
            total = n * per_step
            effective = total * (GANSYNTH_FULL_RESOLUTION_FRACTION if spec.name == "gansynth" else 1.0)
            rows.append(
                {
                    "model": spec.name,
                    "stage": stage,
                    "steps": n,
                    "hours": stage_hours,
                    "n_gpus": spec.reported_gpus,
                    "gpu_variant": gpu.name,
                    "fp32_peak_tflops": peak,
                    "tflop_per_step": per_step / 1e12,
                    "training_eflop": total / 1e18,
                    "training_eflop_effective": effective / 1e18,
                    "implied_utilisation": implied_utilisation(effective, stage_hours, spec.reported_gpus, peak),
                    "implied_utilisation_naive": implied_utilisation(total, stage_hours, spec.reported_gpus, peak),
                    "max_steps_at_peak": spec.reported_gpus * peak * 1e12 * stage_hours * 3600.0 / per_step,
                }
            )
    return pd.DataFrame(rows)


def training_cost_table(
    names: Iterable[str] = MODEL_NAMES, inference: pd.DataFrame | None = None, training: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Notebook 02's second table: per model the paper's TDP x hours, the schedule's counted FLOPs,
    the implied utilisation with its verdict, counted inference FLOPs, and what was measured here."""
    stages = schedule_table(names)
    rows = []
    for name, group in stages.groupby("model", sort=False):
        spec = get_spec(name)
        full = len(group)  # a stage without steps leaves the total unknown (NaN), not 0
        eflop = group.training_eflop.sum(min_count=full)
        effective = group.training_eflop_effective.sum(min_count=full)
        peak, source = fp32_peak(spec.gpu)
        util = implied_utilisation(effective * 1e18, spec.reported_hours, spec.reported_gpus, peak)
        rows.append(
            {
                "model": name,
                "gpu": f"{spec.reported_gpus} x {group.gpu_variant.iloc[0]}",
                "hours": spec.reported_hours,
                "tdp_kwh_paper": spec.reported_kwh,
                "steps": group.steps.sum(min_count=full),
                "training_eflop": eflop,
                "training_eflop_effective": effective,
                "fp32_peak_tflops": peak,
                "fp32_peak_source": source,
                "implied_utilisation": util,
                "implied_utilisation_naive": implied_utilisation(
                    eflop * 1e18, spec.reported_hours, spec.reported_gpus, peak
                ),
                "verdict": verdict(util),
                "inference_gflop_per_audio_s": flops_per_audio_second(_full(name)) / 1e9,
            }
        )
    table = pd.DataFrame(rows)
    return _with_measurements(table, inference, training)


def _with_measurements(table: pd.DataFrame, inference: pd.DataFrame | None, training: pd.DataFrame | None):
    """Join batch-1 and best-batch energy per audio second, and energy per training example, measured here."""
    cols = ["j_per_audio_s", "j_per_audio_s_low", "j_per_audio_s_high"]
    if inference is not None and len(inference):
        b1 = inference[inference.batch == 1].groupby("model")[[*cols, "j_per_audio_s_label"]].first()
        best = inference.loc[inference.groupby("model")["j_per_audio_s"].idxmin()].set_index("model")
        best = best[["batch", *cols]].rename(columns=lambda c: f"{c}_best" if c != "batch" else "best_batch")
        table = table.join(b1, on="model").join(best, on="model")
    if training is not None and len(training):
        keep = ["j_per_example", "j_per_example_low", "j_per_example_high", "j_per_paper_step_label", "schedule_kwh"]
        last = training.drop_duplicates("model", keep="last").set_index("model")
        table = table.join(last[keep], on="model")
    for col in [*cols, "best_batch", "j_per_example", "schedule_kwh"]:
        if col not in table:
            table[col] = math.nan
    table["measured_here"] = table["j_per_audio_s"].notna()
    return table


def findings(table: pd.DataFrame, stages: pd.DataFrame | None = None) -> list[str]:
    """One sentence per model, from :func:`training_cost_table` (and SING's stages from
    :func:`schedule_table`), saying whether the reported hours fit the counted work."""
    out = []
    for r in table.itertuples(index=False):
        head = f"**{r.model}** ({r.gpu}, {r.hours:g} h, {r.fp32_peak_tflops:g} TFLOP/s fp32 each)"
        if math.isnan(r.implied_utilisation):
            row = stages[stages.model == r.model].iloc[0] if stages is not None else None
            cap = (
                f"; at 100 % of peak it would allow at most {row.max_steps_at_peak:,.0f} steps"
                if row is not None
                else ""
            )
            out.append(f"{head}: no step count is published, so the hours cannot be checked{cap}.")
            continue
        text = (
            f"{head}: {r.training_eflop_effective:.2f} EFLOP counted for the schedule imply "
            f"{r.implied_utilisation:.0%} of peak, {r.verdict}"
        )
        if r.implied_utilisation_naive != r.implied_utilisation:
            text += f" (steps x final-stage cost would imply {r.implied_utilisation_naive:.0%}, an over-count)"
        if stages is not None and (stages.model == r.model).sum() > 1:
            parts = stages[stages.model == r.model]
            text += "; by stage " + ", ".join(
                f"{s.stage} {s.implied_utilisation:.0%} ({verdict(s.implied_utilisation).split(':')[0]})"
                for s in parts.itertuples()
            )
        out.append(text + ".")
    return out + [_summary(table, stages)]


def _summary(table: pd.DataFrame, stages: pd.DataFrame | None) -> str:
    """One closing sentence grouping the models by verdict (and naming implausible SING-like stages)."""
    groups: dict[str, list[str]] = {}
    for r in table.itertuples(index=False):
        groups.setdefault(r.verdict.split(":")[0], []).append(r.model)
    parts = [f"{kind}: {', '.join(models)}" for kind, models in groups.items()]
    text = "In short, " + "; ".join(parts)
    if stages is not None:
        staged = stages.groupby("model").stage.transform("count") > 1
        bad = stages[staged & (stages.implied_utilisation > UTILISATION_MAX_PLAUSIBLE)]
        if len(bad):
            named = ", ".join(f"{s.model}'s {s.stage} stage ({s.implied_utilisation:.0%})" for s in bad.itertuples())
            text += f". By stage, {named} is above the plausible band: too few hours for its steps"
    return text + "."
