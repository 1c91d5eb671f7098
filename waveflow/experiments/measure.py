"""E_train, the paper's training-energy measurement, for any WaveFlow configuration.

``measure_training`` trains a configuration for a few steps under our :class:`EnergyMeter` and,
as the paper did, under Carbontracker epoch by epoch; it reports energy per step, per training
example and per training GFLOP (forward + backward, counted) and extrapolates to the paper's
schedule (batch 8 as the paper states; 16,000-sample segments as in WaveFlow's own training, which
the paper does not state; 3 M steps for r = 64 and 96, 2 M for 128, 1 M for 256, see
:data:`PAPER_STEPS`).

The other measurements of a configuration are importable from here too: E_gen, its mels, the
precision comparison and the batch sweep from :mod:`~waveflow.experiments.inference`; held-out
quality, the summary table and the schedule rescaling from :mod:`~waveflow.experiments.summary`.

Every energy number carries its method (``measured:...`` or ``estimated:...`` from the meter), its
interval when estimated (``*_low``/``*_high`` columns, carried through every extrapolation) and,
when it was scaled beyond what was run, the word ``extrapolated``; notebooks 03-06 print these
labels next to the numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..audio import SAMPLE_RATE
from ..data import DEFAULT_SEGMENT
from ..energy import J_PER_KWH, CarbontrackerSession, EnergyMeter, EnergyRecord
from ..measures.flops import count as count_flops
from ..model import WaveFlowConfig, parameter_count
from ..train import PAPER_BATCH, PAPER_STEPS, TrainConfig, train
from .inference import (
    E_GEN_SECONDS,
    SWEEP_NOISE,
    batch_sweep,
    compare_precisions,
    energy_mels,
    longest_clips,
    measure_inference,
)
from .metered import bounds, energy_columns, log_record
from .summary import SUMMARY_COLUMNS, measure_quality, measured_summary, rescale_schedule

__all__ = [
    "E_GEN_SECONDS",
    "PAPER_BATCH",
    "PAPER_SEGMENT",
    "PAPER_STEPS",
    "SUMMARY_COLUMNS",
    "SWEEP_NOISE",
    "batch_sweep",
    "compare_precisions",
    "energy_mels",
    "longest_clips",
    "measure_inference",
    "measure_quality",
    "measure_training",
    "measured_summary",
    "paper_steps",
    "rescale_schedule",
]

#: 16,000-sample training crops, as in WaveFlow (Ping et al.) and its released code; Douwes et al.
#: state the batch (8) but not the crop length.
PAPER_SEGMENT = DEFAULT_SEGMENT


def _extrapolated_kwh(j_per_audio_sample: float, schedule_steps: int) -> float:
    """Training energy of a whole schedule at the paper's batch and crop, from joules per audio sample.

    Cost is taken as proportional to the audio processed, which holds for this fully convolutional
    model at a fixed crop length.
    """
    return j_per_audio_sample * schedule_steps * PAPER_BATCH * PAPER_SEGMENT / J_PER_KWH


def paper_steps(config: WaveFlowConfig) -> int:
    """Training steps of the paper's schedule for this r (ValueError for an r it did not train)."""
    if config.res_channels not in PAPER_STEPS:
        raise ValueError(
            f"paper_steps: r={config.res_channels} has no paper schedule; expected one of {sorted(PAPER_STEPS)}"
        )
    return PAPER_STEPS[config.res_channels]


def measure_training(
    name: str,
    config: WaveFlowConfig,
    out: str | Path,
    *,
    steps: int,
    batch_size: int,
    segment: int,
    data: str | Path,
    epochs: int = 2,
    warmup_steps: int = 1,
    intensity: str | None = None,
    pue: str | float | None = None,
    device: str = "auto",
    seed: int = 0,
    carbontracker: bool = True,
    ct_update_interval: float = 1.0,
    schedule_steps: int | None = None,
    log: bool | str | Path = True,
) -> dict[str, Any]:
    """Train ``config`` for ``steps`` measured steps and return one tidy row of results.

    ``warmup_steps`` (>= 1) run first, unmeasured (first-step allocation and kernel selection are
    not representative); the meter then covers exactly the ``steps`` measured steps of the same
    run, split into ``epochs`` Carbontracker epochs. Energy per training example is the metered energy divided by
    ``steps x batch_size``; per audio sample it is further divided by ``segment``. The
    extrapolation to the paper scales energy per audio sample to ``schedule_steps`` (default the
    paper's for this r) x 8 x 16,000 samples, i.e. it assumes cost proportional to audio
    processed, which holds for this fully convolutional model. The meter's record is appended
    to the energy log (``log=True``: ``build/results/energy_log.csv``; a path; or False).
    """
    if steps < epochs or epochs < 1:
        raise ValueError(f"measure_training: steps={steps} and epochs={epochs}; expected 1 <= epochs <= steps")
    if warmup_steps < 1:
        raise ValueError(f"measure_training: warmup_steps={warmup_steps}; expected >= 1 (the meter starts after it)")
    sched = schedule_steps if schedule_steps is not None else paper_steps(config)  # fail before training
    run = TrainConfig(
        model=config,
        data=str(data),
        out=str(out),
        steps=warmup_steps + steps,
        batch_size=batch_size,
        segment=segment,
        seed=seed,
        device=device,
        val_every=0,
        val_clips=0,
        name=name,
    )
    meter = EnergyMeter(f"train {name}", intensity=intensity, pue=pue, warn=False)
    session = (
        CarbontrackerSession(
            epochs,
            log_dir=Path(out) / "carbontracker",
            intensity=intensity,
            pue=pue,
            meter=meter,
            update_interval=ct_update_interval,
        )
        if carbontracker
        else None
    )
    result, ct = _metered_run(run, meter, session, warmup_steps, steps, epochs)
    log_record(meter.record, log)
    return _training_row(name, config, run, result, meter.record, session, ct, steps, sched)


def _metered_run(
    run: TrainConfig,
    meter: EnergyMeter,
    session: CarbontrackerSession | None,
    warmup_steps: int,
    steps: int,
    epochs: int,
) -> tuple[Any, Any]:
    """Train ``run`` with ``meter`` (and Carbontracker) covering exactly the measured steps.

    The measured window opens when the last warm-up step ends and closes when the last measured
    step ends, before the final checkpoint is written (set-up, data validation and checkpoint I/O
    are not training energy). Returns ``(TrainResult, CarbontrackerResult or None)``.
    """
    per_epoch = [steps // epochs + (1 if i < steps % epochs else 0) for i in range(epochs)]
    boundaries = {warmup_steps + sum(per_epoch[: i + 1]) for i in range(epochs)}
    if session is not None:
        session.start()  # build the tracker now, outside the measured window
    state: dict[str, Any] = {}

    def on_step(step: int, loss: float) -> None:
        if step == warmup_steps:
            meter.start()
            if session is not None:
                session.epoch_start()
        elif step in boundaries:
            if session is not None:
                session.epoch_end()
            if step < run.steps:
                if session is not None:
                    session.epoch_start()
            else:
                state["ct"] = session.stop() if session is not None else None
                state["record"] = meter.stop()

    try:
        result = train(run, on_step=on_step, progress=False)
    finally:  # never leave carbontracker patched or the meter's thread running
        if session is not None and "ct" not in state:
            state["ct"] = session.stop()
        if "record" not in state:
            meter.stop()
    return result, state["ct"]


def _training_row(
    name: str,
    config: WaveFlowConfig,
    run: TrainConfig,
    result: Any,
    record: EnergyRecord,
    session: CarbontrackerSession | None,
    ct: Any,
    steps: int,
    sched: int,
) -> dict[str, Any]:
    """The tidy E_train row of one measured run, with Carbontracker's figures beside ours."""
    examples = steps * run.batch_size
    audio_samples = examples * run.segment
    j_per_sample = record.energy_j_pue / audio_samples
    low, high = bounds(record)
    params = parameter_count(config)
    train_gflops = count_flops(config, "training").flops_per_audio_second * audio_samples / SAMPLE_RATE / 1e9
    row = {
        "config": name,
        "h": config.n_height,
        "r": config.res_channels,
        "params": params,
        "steps": steps,
        "batch_size": run.batch_size,
        "segment": run.segment,
        "wall_s": record.wall_s,
        **energy_columns(record, low, high),
        "cpu_tdp_w": record.cpu_tdp_w,
        "cpu_w_per_thread": record.cpu_w_per_thread,
        "cpu_utilisation": record.cpu_utilisation,
        "j_per_step": record.energy_j_pue / steps,
        "j_per_example": record.energy_j_pue / examples,
        "j_per_example_low": low / examples,
        "j_per_example_high": high / examples,
        "j_per_audio_sample": j_per_sample,
        "train_gflops": train_gflops,
        "j_per_train_gflop": record.energy_j_pue / train_gflops,
        "j_per_train_gflop_low": low / train_gflops,
        "j_per_train_gflop_high": high / train_gflops,
        "final_loss": result.final_train_loss,
        "val_nll_nats": result.final_val_nll,
        "checkpoint": str(result.last_checkpoint),
        "schedule_steps": sched,
        "e_train_kwh_extrapolated": _extrapolated_kwh(j_per_sample, sched),
        "e_train_kwh_low": _extrapolated_kwh(low / audio_samples, sched),
        "e_train_kwh_high": _extrapolated_kwh(high / audio_samples, sched),
        "e_train_label": f"extrapolated from {steps} steps ({record.methods_label()})",
        "intensity_g_per_kwh": record.intensity_g_per_kwh,
        "intensity_code": record.intensity_code,
        "notes": " | ".join(record.notes),
    }
    if ct is None and session is not None:
        row.update(
            ct_energy_kwh=math.nan,
            ct_extrapolated_kwh=math.nan,
            ct_e_train_kwh_extrapolated=math.nan,
            ct_method="Carbontracker failed (see ct_notes)",
            ct_notes=" | ".join(session.notes),
        )
    if ct is not None:
        row.update(
            ct_energy_kwh=ct.energy_kwh,
            ct_extrapolated_kwh=ct.extrapolated_kwh,
            ct_method=ct.method,
            ct_e_train_kwh_extrapolated=_extrapolated_kwh(ct.energy_j / audio_samples, sched),
            ct_notes=" | ".join(ct.notes),
        )
    return row
