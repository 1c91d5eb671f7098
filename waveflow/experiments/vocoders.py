"""The vocoder table: one measurement protocol for every model, and energy relative to HiFi-GAN V1.

For each model (:mod:`~waveflow.experiments.vocoder_candidates`) the protocol is the same:

1. build it with random weights on the device; make its input for ``batch`` clips of ``seconds``;
2. one warm-up call under ``FlopCounterMode`` (counted FLOPs; a diffusion model counts all of its
   reverse steps, since they all run inside the call) with the peak memory of that call, then
   ``warmup`` plain calls;
3. ``trials`` timed calls, each its own window of one :class:`~waveflow.energy.EnergyMeter`: the
   mean and coefficient of variation of time and energy;
4. a small batch sweep (``sweep``, a few calls each) for the energy-optimal batch;
5. the protocol of the Vocos paper's speed table: ``vocos_batch`` clips of ``vocos_seconds`` per call,
   whose × real time can be set beside published figures.

Energy is NVML's counter on a GPU, the meter's estimate with its ``[low, high]`` on a CPU without
counters. Every row also gives its energy relative to the reference model measured in the same run
(:data:`~waveflow.zoo.vocoders.registry.REFERENCE_MODEL`, as DCASE's energy-aware ranking does).
Within one run every estimated component of both models comes from the same reader, whose power
per busy second is one unknown inside ``[low, high]`` for both: the ratio is taken at the corners of
those shared factors (:func:`relative_energy`), so a CPU's TDP-per-thread uncertainty cancels and the
ratio's interval is much narrower than either number's; the trials' noise widens it by two standard
errors.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..analysis.sweep import mark_optimum
from ..devices import resolve_device
from ..energy import EnergyMeter, Measurement
from .metered import log_record
from .vocoder_candidates import RANDOM_WEIGHTS_NOTE, REFERENCE_MODEL, Candidate, Synth, canonical_name, get_candidate

#: component key -> (joules, low factor, high factor): the per-reader parts of a trial's energy
Parts = dict[tuple[str, str, str], tuple[float, float, float]]


@dataclass(frozen=True)
class Protocol:
    """How every model is measured. The defaults are the short CPU run of ``waveflow vocoders``.

    Args:
        seconds: audio per clip at batch 1 (whole hops; fixed-length models produce their own clip).
        trials: timed calls at batch 1 (at least 5: the CV needs them).
        warmup: plain calls before the trials, after the counted one.
        sweep: batch sizes of the energy-optimal batch search (1 is the trials themselves).
        sweep_calls: calls metered per sweep batch size.
        vocos_batch, vocos_seconds, vocos_calls: the Vocos paper's speed protocol (16 × 1 s clips).
        budget_s: seconds a model's sweep and 16-clip protocol may take, predicted from its batch-1
            trials; beyond it they are skipped and the row says so (a 1000-step diffusion model on a
            CPU would otherwise hold the table for half an hour).
    """

    seconds: float = 0.08
    trials: int = 5
    warmup: int = 1
    sweep: tuple[int, ...] = (1, 2, 4)
    sweep_calls: int = 2
    vocos_batch: int = 16
    vocos_seconds: float = 0.08
    vocos_calls: int = 1
    budget_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("trials", "sweep_calls", "vocos_batch", "vocos_calls"):
            _positive(getattr(self, name), name)
        if self.trials < 5:
            raise ValueError(f"trials: expected at least 5 timed calls (the CV needs them), got {self.trials}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup: expected an integer >= 0, got {self.warmup!r}")
        for b in self.sweep:
            _positive(b, "batch (sweep)")
        for name in ("seconds", "vocos_seconds", "budget_s"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return value


def check_device(device: str) -> torch.device:
    """``device`` by the project's rule (:func:`waveflow.devices.resolve_device`), limited to what the
    table runs on: a CPU or a CUDA GPU."""
    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: the table runs on cpu or cuda, got {dev.type}")
    return dev


# ----------------------------------------------------------------------------------------------
# one call, counted and watched
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PeakRss:
    """The process's peak resident memory above its level at the start, sampled every ``interval`` s
    (CPU: torch's CPU allocator keeps no statistics, so the process is watched instead)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self._stop = threading.Event()
        self.base = self.peak = self._proc.memory_info().rss

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> _PeakRss:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def counted_call(synth: Synth, inputs: tuple[torch.Tensor, ...], device: torch.device) -> tuple[int, float, float, str]:
    """One call under ``FlopCounterMode``: ``(samples per clip, FLOPs, peak memory MiB, how memory was read)``."""
    counter = FlopCounterMode(display=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with counter:
            audio = synth.run(*inputs)
        _sync(device)
        peak, how = (torch.cuda.max_memory_allocated(device) - base) / 2**20, "torch.cuda.max_memory_allocated"
    else:
        with _PeakRss() as rss, counter:
            audio = synth.run(*inputs)
        peak, how = rss.mib, "process RSS growth, sampled every 2 ms"
    return int(audio.shape[-1]), float(counter.get_total_flops()), peak, how


# ----------------------------------------------------------------------------------------------
# the per-reader parts of a measurement, and the ratio of two
def parts(measurement: Measurement, scale: float = 1.0) -> Parts:
    """The counted components of ``measurement`` keyed by (kind, device, method), times ``scale``,
    each with the factors that turn it into its low and high bounds (1 for a measurement)."""
    out: Parts = {}
    for c in measurement.components:
        if c.kind == "wall":
            continue
        low, high = c.bounds
        lf, hf = (low / c.joules, high / c.joules) if c.joules > 0 else (1.0, 1.0)
        j0, _, _ = out.get((c.kind, c.device, c.method), (0.0, lf, hf))
        out[(c.kind, c.device, c.method)] = (j0 + c.joules * scale, lf, hf)
    return out


def mean_parts(trials: Sequence[Parts]) -> Parts:
    """The trials' components averaged key by key (a key missing from a trial counts 0 J there)."""
    keys = dict.fromkeys(k for t in trials for k in t)
    out: Parts = {}
    for key in keys:
        present = [t[key] for t in trials if key in t]
        out[key] = (sum(p[0] for p in present) / len(trials), present[0][1], present[0][2])
    return out


def relative_energy(model: Parts, reference: Parts, model_cv: float = 0.0, reference_cv: float = 0.0,
                    model_n: int = 1, reference_n: int = 1) -> tuple[float, float, float]:
    """``(ratio, low, high)`` of a model's energy over the reference's, both measured in one run.

    A reader's estimate is its reading × an unknown factor in ``[low, high]`` that is the *same* for
    both models (same hardware, same run), so the ratio's bounds are its extremes over the corners of
    those shared factors, a linear-fractional function being monotone in each. With one estimated
    reader (a CPU's TDP per thread) the factor cancels and the interval collapses to the ratio of
    readings. The trials' noise then widens it by two standard errors of the ratio (delta method on
    the two means' CVs), so two models the noise cannot separate are not ranked with false precision.
    """
    keys = sorted(set(model) | set(reference))
    if not keys or sum(reference.get(k, (0.0, 1, 1))[0] for k in keys) <= 0:
        return math.nan, math.nan, math.nan

    def ratio(factors: dict[tuple[str, str, str], float]) -> float:
        num = sum(model.get(k, (0.0, 1, 1))[0] * factors[k] for k in keys)
        den = sum(reference.get(k, (0.0, 1, 1))[0] * factors[k] for k in keys)
        return num / den if den > 0 else math.nan

    def bounds_of(k: tuple[str, str, str]) -> tuple[float, float]:
        src = model.get(k) or reference[k]
        return src[1], src[2]

    middle = ratio(dict.fromkeys(keys, 1.0))
    corners = [ratio(dict(zip(keys, combo))) for combo in itertools.product(*(bounds_of(k) for k in keys))]
    noise = 2.0 * math.sqrt(model_cv**2 / max(model_n, 1) + reference_cv**2 / max(reference_n, 1))
    return middle, min(corners) * max(0.0, 1.0 - noise), max(corners) * (1.0 + noise)


# ----------------------------------------------------------------------------------------------
# one model
@dataclass
class ModelRun:
    """What the protocol measured of one model, before it becomes a row: the trials' windows at batch 1."""

    candidate: Candidate
    clip_s: float
    flops_per_audio_s: float
    peak_mib: float
    memory_method: str
    trials: list[Measurement] = field(default_factory=list)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    vocos_wall_s: float = math.nan
    vocos_audio_s: float = math.nan
    skipped: str = ""

    @property
    def wall(self) -> list[float]:
        return [m.seconds for m in self.trials]

    @property
    def joules(self) -> list[float]:
        return [m.joules for m in self.trials]

    @property
    def parts(self) -> Parts:
        return mean_parts([parts(m) for m in self.trials])


def _cv(values: Sequence[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if len(values) > 1 and mean > 0 else math.nan


def _metered_calls(synth: Synth, inputs: tuple[torch.Tensor, ...], calls: int, label: str, meter: EnergyMeter,
                   device: torch.device) -> list[Measurement]:
    """``calls`` calls of ``synth``, each its own window of ``meter``; work still queued on a GPU (a warm-up's)
    is finished first, so it lands in no window."""
    _sync(device)
    out = []
    for i in range(calls):
        with meter.window(f"{label} {i}") as m:
            synth.run(*inputs)
            _sync(device)
        out.append(m)
    return out


def measure_model(candidate: Candidate, protocol: Protocol, meter: EnergyMeter, device: torch.device,
                  seed: int = 0) -> ModelRun:
    """Run the protocol on one model inside a running ``meter``."""
    torch.manual_seed(seed)
    synth = candidate.load(device)
    with torch.inference_mode():
        inputs = synth.inputs(1, protocol.seconds)
        samples, flops, peak, how = counted_call(synth, inputs, device)
        clip_s = samples / synth.sample_rate
        run = ModelRun(candidate, clip_s, flops / clip_s, peak, how)
        for _ in range(protocol.warmup):
            synth.run(*inputs)
        run.trials = _metered_calls(synth, inputs, protocol.trials, f"{candidate.name} trial", meter, device)
        run.sweep.append(_sweep_row(candidate.name, 1, clip_s, run.trials))
        call_s = statistics.fmean(run.wall)
        batches = sorted(set(protocol.sweep) - {1})
        sweep_s = call_s * sum(b * (protocol.sweep_calls + 1) for b in batches)
        vocos_s = call_s * protocol.vocos_batch * (protocol.vocos_calls + 1) * protocol.vocos_seconds / protocol.seconds
        if sweep_s + vocos_s > protocol.budget_s:
            run.skipped = (
                f"sweep and {protocol.vocos_batch}-clip protocol skipped: predicted {sweep_s + vocos_s:.0f} s from "
                f"{call_s:.3g} s per call, over the {protocol.budget_s:g}-s budget"
            )
            return run
        for batch in batches:
            batch_inputs = synth.inputs(batch, protocol.seconds)
            synth.run(*batch_inputs)  # warm-up at this shape
            calls = _metered_calls(synth, batch_inputs, protocol.sweep_calls, f"{candidate.name} batch {batch} call",
                                   meter, device)
            run.sweep.append(_sweep_row(candidate.name, batch, clip_s, calls))
        vocos_inputs = synth.inputs(protocol.vocos_batch, protocol.vocos_seconds)
        audio = synth.run(*vocos_inputs)  # warm-up at this shape
        calls = _metered_calls(synth, vocos_inputs, protocol.vocos_calls, f"{candidate.name} vocos protocol", meter,
                               device)
        run.vocos_wall_s = statistics.fmean(m.seconds for m in calls)
        run.vocos_audio_s = audio.shape[0] * audio.shape[-1] / synth.sample_rate
    return run


def _sweep_row(name: str, batch: int, clip_s: float, calls: list[Measurement]) -> dict[str, Any]:
    """One batch size of the sweep: mean time and energy per second of audio over its metered calls."""
    audio = batch * clip_s
    wall = statistics.fmean(m.seconds for m in calls)
    return {
        "model": name,
        "batch": batch,
        "calls": len(calls),
        "clip_s": clip_s,
        "wall_s": wall,
        "xrt": audio / wall,
        "j_per_audio_s": statistics.fmean(m.joules for m in calls) / audio,
        "j_per_audio_s_low": statistics.fmean(m.joules_low for m in calls) / audio,
        "j_per_audio_s_high": statistics.fmean(m.joules_high for m in calls) / audio,
    }


# ----------------------------------------------------------------------------------------------
# the table
def measure_vocoders(
    names: Iterable[str],
    protocol: Protocol | None = None,
    *,
    device: str = "cpu",
    seed: int = 0,
    intensity: str | None = None,
    pue: str | float | None = None,
    log: bool | str | Path = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure ``names`` (plus the reference model, always) with one protocol in one metered run.

    Returns ``(table, sweep)``: one row per model (:data:`COLUMNS`), and the batch sweep's rows
    with ``optimal``/``within_noise`` per model. Unknown names, bad protocol values and a missing
    device raise ``ValueError`` before anything is built.
    """
    protocol = protocol or Protocol()
    dev = check_device(device)
    wanted = list(dict.fromkeys(canonical_name(n) for n in names))
    if not wanted:
        raise ValueError("--models: expected at least one model")
    order = wanted if REFERENCE_MODEL in wanted else [REFERENCE_MODEL, *wanted]
    runs: list[ModelRun] = []
    with EnergyMeter("vocoder table", intensity=intensity, pue=pue, warn=False) as meter:
        for name in order:
            if progress:
                progress(name)
            runs.append(measure_model(get_candidate(name), protocol, meter, dev, seed))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    record = meter.record
    log_record(record, log)
    reference = next(r for r in runs if r.candidate.name == REFERENCE_MODEL)
    rows, sweeps = [], []
    for run in runs:
        sweep = mark_optimum(pd.DataFrame(run.sweep))
        sweeps.append(sweep)
        rows.append(_row(run, reference, sweep, protocol, record.pue, record.methods_label(), record.hardware_label(),
                         in_request=run.candidate.name in wanted))
    sweep_table = pd.concat(sweeps, ignore_index=True)
    for col in ("j_per_audio_s", "j_per_audio_s_low", "j_per_audio_s_high"):
        sweep_table[col] *= record.pue
    return pd.DataFrame(rows, columns=COLUMNS), sweep_table


COLUMNS = [
    "model", "family", "group", "params", "official_params", "paper_params_m", "steps", "sample_rate", "clip_s",
    "length", "trials", "wall_s", "wall_cv", "xrt", "j_per_audio_s", "j_per_audio_s_low", "j_per_audio_s_high",
    "energy_cv", "gflop_per_audio_s", "achieved_gflops", "optimal_batch", "j_per_audio_s_optimal",
    "j_per_audio_s_optimal_low", "j_per_audio_s_optimal_high", "peak_mib", "memory_method", "vocos_batch",
    "vocos_clip_s", "vocos_xrt", "skipped", "relative_energy", "relative_energy_low", "relative_energy_high",
    "reference", "requested", "pue", "energy_method", "hardware", "note",
]


def _row(run: ModelRun, reference: ModelRun, sweep: pd.DataFrame, protocol: Protocol, pue: float, method: str,
         hardware: str, in_request: bool) -> dict[str, Any]:
    c = run.candidate
    wall, joules = statistics.fmean(run.wall), statistics.fmean(run.joules)
    energy_cv, ref_cv = _cv(run.joules), _cv(reference.joules)
    rel, rel_low, rel_high = relative_energy(
        {k: (j / run.clip_s, lf, hf) for k, (j, lf, hf) in run.parts.items()},
        {k: (j / reference.clip_s, lf, hf) for k, (j, lf, hf) in reference.parts.items()},
        0.0 if run is reference else energy_cv, 0.0 if run is reference else ref_cv,
        len(run.joules), len(reference.joules),
    )
    best = sweep.loc[sweep["optimal"]].iloc[0]
    return {
        "model": c.name,
        "family": c.family,
        "group": c.group,
        "params": c.params,
        "official_params": c.official_params,
        "paper_params_m": c.paper_params_m,
        "steps": c.steps,
        "sample_rate": c.sample_rate,
        "clip_s": run.clip_s,
        "length": c.length,
        "trials": len(run.wall),
        "wall_s": wall,
        "wall_cv": _cv(run.wall),
        "xrt": run.clip_s / wall,
        "j_per_audio_s": pue * joules / run.clip_s,
        "j_per_audio_s_low": pue * statistics.fmean(m.joules_low for m in run.trials) / run.clip_s,
        "j_per_audio_s_high": pue * statistics.fmean(m.joules_high for m in run.trials) / run.clip_s,
        "energy_cv": energy_cv,
        "gflop_per_audio_s": run.flops_per_audio_s / 1e9,
        "achieved_gflops": run.flops_per_audio_s * run.clip_s / wall / 1e9,
        "optimal_batch": int(best["batch"]),
        "j_per_audio_s_optimal": pue * best["j_per_audio_s"],
        "j_per_audio_s_optimal_low": pue * best["j_per_audio_s_low"],
        "j_per_audio_s_optimal_high": pue * best["j_per_audio_s_high"],
        "peak_mib": run.peak_mib,
        "memory_method": run.memory_method,
        "vocos_batch": protocol.vocos_batch,
        "vocos_clip_s": run.vocos_audio_s / protocol.vocos_batch,
        "vocos_xrt": run.vocos_audio_s / run.vocos_wall_s,
        "skipped": run.skipped,
        "relative_energy": rel,
        "relative_energy_low": rel_low,
        "relative_energy_high": rel_high,
        "reference": REFERENCE_MODEL,
        "requested": in_request,
        "pue": pue,
        "energy_method": method,
        "hardware": hardware,
        "note": RANDOM_WEIGHTS_NOTE,
    }
