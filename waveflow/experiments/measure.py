"""The paper's two energy measurements, E_train and E_gen, for any WaveFlow configuration.

``measure_training`` trains a configuration for a few steps under our :class:`EnergyMeter` and,
as the paper did, under Carbontracker epoch by epoch; it reports energy per step, per training
example and per training GFLOP (forward + backward, counted) and extrapolates to the paper's
schedule (batch 8 as the paper states; 16,000-sample segments as in WaveFlow's own training, which
the paper does not state; 3 M steps for r = 64 and 96, 2 M for 128, 1 M for 256, see
:data:`PAPER_STEPS`). ``measure_inference`` times and meters the fast synthesis of a set of mel
spectrograms and reports E_gen, the energy to generate 100 s of 22.05 kHz audio, with FLOPs per
audio second and energy per GFLOP. ``batch_sweep`` compares synthesis batch sizes by energy per
audio second on this machine, with a noise margin.

Every energy number carries its method (``measured:...`` or ``estimated:...`` from the meter), its
interval when estimated (``*_low``/``*_high`` columns, carried through every extrapolation) and,
when it was scaled beyond what was run, the word ``extrapolated``; notebooks 03-05 print these
labels next to the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis.sweep import SWEEP_NOISE as SWEEP_NOISE  # re-exported: notebooks cite experiments.SWEEP_NOISE
from ..analysis.sweep import mark_optimum
from ..audio import HOP_LENGTH, SAMPLE_RATE, log_mel, samples_for, whole_hops
from ..data import DEFAULT_SEGMENT, LJSpeech, validate_dataset
from ..devices import resolve_device
from ..energy import J_PER_KWH, J_PER_WH, CarbontrackerSession, EnergyMeter, EnergyRecord, append_record
from ..measures import quality
from ..measures.flops import count as count_flops
from ..model import FastSynthesizer, WaveFlow, WaveFlowConfig, load_checkpoint, parameter_count, synthesize
from ..train import PAPER_BATCH, PAPER_STEPS, TrainConfig, train

#: 16,000-sample training crops, as in WaveFlow (Ping et al.) and its released code; Douwes et al.
#: state the batch (8) but not the crop length.
PAPER_SEGMENT = DEFAULT_SEGMENT
E_GEN_SECONDS = 100.0  # E_gen is the energy to generate 100 s of audio


def _bounds(record: EnergyRecord) -> tuple[float, float]:
    """``(low, high)`` joules of a record with PUE: the interval of its estimated components."""
    return record.energy_j_low * record.pue, record.energy_j_high * record.pue


def _log(record: EnergyRecord, log: bool | str | Path) -> None:
    """Append to the energy log: True = the default ``build/results/energy_log.csv``, False = not at all."""
    if log is not False:
        append_record(record, None if log is True else log)


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


# ----------------------------------------------------------------------------------------------
# E_train
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
    _log(meter.record, log)
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


def _energy_columns(record: EnergyRecord, low: float, high: float) -> dict[str, Any]:
    """The columns every E_train and E_gen row shares: energy with PUE and its interval, how it was
    obtained, what it covers, and on which hardware."""
    return {
        "energy_j": record.energy_j,
        "pue": record.pue,
        "energy_j_pue": record.energy_j_pue,
        "energy_j_pue_low": low,
        "energy_j_pue_high": high,
        "energy_method": record.methods_label(),
        "energy_scope": record.scope(),
        "hardware": record.hardware_label(),
    }


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
    low, high = _bounds(record)
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
        **_energy_columns(record, low, high),
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


def rescale_schedule(
    table: pd.DataFrame, model: str, from_steps: int, to_steps: int, column: str = "e_train_kwh", key: str = "model"
) -> pd.DataFrame:
    """Copy of a results table with one model's training energy scaled to another step count.

    Training energy is proportional to steps at a fixed batch and segment, so this answers "what
    if this model had been trained for ``to_steps``" without retraining.
    """
    if from_steps <= 0 or to_steps <= 0:
        raise ValueError(f"rescale_schedule: steps must be positive, got {from_steps} -> {to_steps}")
    if model not in set(table[key]):
        raise ValueError(f"rescale_schedule: {model!r} not in column {key!r}; expected one of {sorted(table[key])}")
    out = table.copy()
    out.loc[out[key] == model, column] = out.loc[out[key] == model, column] * to_steps / from_steps
    return out


# ----------------------------------------------------------------------------------------------
# E_gen
def longest_clips(data: str | Path, n_clips: int, report: Any = None) -> list[torch.Tensor]:
    """Audio of the ``n_clips`` longest clips of a folder (all splits), chosen from the wav headers
    so that a 13,100-clip LJSpeech is not decoded just to pick ten clips."""
    report = report if report is not None else validate_dataset(data)
    # n_height only satisfies LJSpeech's crop check (segment % h); no crops are drawn here.
    pools = [LJSpeech(data, split, n_height=8, cache=False, report=report) for split in ("train", "validation", "test")]
    ranked = sorted(
        ((ds.clips[i].num_samples, k, i) for k, ds in enumerate(pools) for i in range(len(ds))), reverse=True
    )
    return [pools[k].load(i) for _, k, i in ranked[:n_clips]]


def energy_mels(clips: Iterable[torch.Tensor], n_clips: int, seconds: float) -> list[torch.Tensor]:
    """``n_clips`` log-mels of exactly ``seconds`` of audio each, for energy measurements.

    Takes the longest clips first; a clip shorter than ``seconds`` is repeated end to end to reach
    the length (synthesis cost depends on the length, not on the content), so the paper's
    10 x 10 s works even on folders whose clips are all under 10 s. The length is rounded to
    whole hops: ``frames = round(seconds * 22050 / 256) + 1``.
    """
    if n_clips < 1 or not seconds > 0:
        raise ValueError(f"energy_mels: n_clips={n_clips}, seconds={seconds}; expected >= 1 clip of > 0 s")
    samples = samples_for(seconds, min_hops=3)
    pool = sorted(clips, key=lambda c: -c.shape[-1])
    if not pool:
        raise ValueError("energy_mels: no clips given")
    mels = []
    for i in range(n_clips):
        clip = pool[i % len(pool)]
        reps = -(-samples // clip.shape[-1])
        mels.append(log_mel(clip.repeat(reps)[:samples]))
    return mels


def _synthesize_all(
    synth: FastSynthesizer, mels: list[torch.Tensor], batch_size: int, seed: int, device: torch.device
) -> float:
    """Synthesise every mel in batches of equal length; returns seconds of audio produced."""
    generator = torch.Generator(device=device).manual_seed(seed)
    produced = 0
    for start in range(0, len(mels), batch_size):
        batch = torch.stack(mels[start : start + batch_size]).to(device)
        audio = synth(batch, generator=generator)
        produced += audio.numel()
    return produced / SAMPLE_RATE  # the meter synchronises CUDA before its last reading


def measure_inference(
    name: str,
    model: WaveFlow | str | Path,
    mels: list[torch.Tensor],
    *,
    batch_size: int = 1,
    intensity: str | None = None,
    pue: str | float | None = None,
    device: str = "cpu",
    seed: int = 0,
    warmup: bool = True,
    log: bool | str | Path = True,
    precision: str = "fp32",
    cuda_graphs: bool = False,
) -> dict[str, Any]:
    """Meter the fast synthesis of ``mels`` (equal lengths) in ``precision`` and return one tidy row.

    With ``cuda_graphs`` (CUDA only) the synthesis of each batch shape is replayed from a recorded
    CUDA graph (:class:`~waveflow.model.FastSynthesizer`); the warm-up then records the graphs of the
    shapes to come, so the metered window holds replays only, as a service generating many clips
    of one length would run.

    E_gen is reported for 100 s of audio: measured directly when exactly 100 s were generated,
    otherwise scaled linearly from the audio generated and labelled ``extrapolated``; an estimated
    energy carries its interval (``e_gen_wh_low``/``_high``). The metered window covers synthesis
    only: the mels are computed before it and no wav is written inside it (the paper's "produce and
    record" may include writing). The meter's record is appended to the energy log as in
    :func:`measure_training`.
    """
    if not mels:
        raise ValueError("measure_inference: no mels given; expected at least one (n_mels, frames) tensor")
    if len({m.shape for m in mels}) != 1:
        raise ValueError(
            f"measure_inference: mels must share one shape to batch, got {sorted({tuple(m.shape) for m in mels})}"
        )
    dev = resolve_device(str(device))
    if not isinstance(model, WaveFlow):
        model, _ = load_checkpoint(model, device=dev)
    model = model.to(dev).eval()
    synth = FastSynthesizer(model, precision=precision, cuda_graphs=cuda_graphs)
    if warmup and cuda_graphs:  # the same batches unmetered: every shape the metered loop replays is recorded
        _synthesize_all(synth, mels, batch_size, seed, dev)
    elif warmup:  # one short unmeasured call: allocator and kernel selection
        synth(mels[0][:, : min(mels[0].shape[-1], 3)].unsqueeze(0).to(dev))
    label = f"synthesize {name}" + ("" if precision == "fp32" else f" {precision}") + (" cuda-graphs" * cuda_graphs)
    with EnergyMeter(label, intensity=intensity, pue=pue, warn=False) as meter:
        seconds = _synthesize_all(synth, mels, batch_size, seed, dev)
    record = meter.record
    _log(record, log)
    flops_per_s = count_flops(model.config, "synthesis", name).flops_per_audio_second
    flops = flops_per_s * seconds
    exact = math.isclose(seconds, E_GEN_SECONDS, rel_tol=1e-3)
    low, high = _bounds(record)
    return {
        "config": name,
        "h": model.config.n_height,
        "r": model.config.res_channels,
        "clips": len(mels),
        "batch_size": batch_size,
        "precision": precision,
        "cuda_graphs": cuda_graphs,
        "audio_s": seconds,
        "wall_s": record.wall_s,
        "rtf": record.wall_s / seconds,
        **_energy_columns(record, low, high),
        "j_per_audio_s": record.energy_j_pue / seconds,
        "j_per_audio_s_low": low / seconds,
        "j_per_audio_s_high": high / seconds,
        "e_gen_wh": record.energy_j_pue / seconds * E_GEN_SECONDS / J_PER_WH,
        "e_gen_wh_low": low / seconds * E_GEN_SECONDS / J_PER_WH,
        "e_gen_wh_high": high / seconds * E_GEN_SECONDS / J_PER_WH,
        "e_gen_label": ("measured" if exact else f"extrapolated from {seconds:.2f} s") + f" ({record.methods_label()})",
        "gflops_per_audio_s": flops_per_s / 1e9,
        "achieved_gflops": flops / 1e9 / record.wall_s,
        "j_per_gflop": record.energy_j_pue / (flops / 1e9),
        "j_per_gflop_low": low / (flops / 1e9),
        "j_per_gflop_high": high / (flops / 1e9),
        "notes": " | ".join(record.notes),
    }


def compare_precisions(
    name: str,
    model: WaveFlow,
    mels: list[torch.Tensor],
    audio: torch.Tensor,
    *,
    precisions: Iterable[str] = ("fp32", "bf16"),
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Speed, energy and error of fast synthesis in each precision, one row per precision.

    Each row is :func:`measure_inference` in that precision plus two errors against float32:
    ``roundtrip_max_abs``/``roundtrip_rms``, the inverse (in this precision) of the float32 density
    pass of the real clip ``audio`` compared with ``audio`` itself, and ``log_mel_l1_vs_fp32``, the
    log-mel L1 distance between this precision's synthesis of ``mels[0]`` and the float32 one from the
    same latent. Reduced-precision errors are reported, never asserted equal. ``speedup_vs_fp32`` is
    fp32's wall time over this row's, both measured here in the same call.
    """
    dev = next(model.parameters()).device
    clip = audio.reshape(1, -1).to(dev)
    clip = clip[:, : whole_hops(clip.shape[-1])]
    if clip.shape[-1] == 0:
        raise ValueError(
            f"compare_precisions: audio of {audio.numel()} samples; expected at least one hop ({HOP_LENGTH})"
        )
    mel = log_mel(clip.cpu()).to(dev)
    with torch.no_grad():
        z, _ = model(clip, mel)
    ref_mel = mels[0].unsqueeze(0).to(dev)
    z_ref = torch.randn(
        1, model.config.hop_length * (ref_mel.shape[-1] - 1), generator=torch.Generator().manual_seed(seed)
    )
    rows, fp32_audio = [], None  # fp32's synthesis: the reference of the log-mel distance
    for precision in precisions:
        row = measure_inference(name, model, mels, precision=precision, seed=seed, **kwargs)
        synth = FastSynthesizer(model, precision=precision)
        back = synth(mel, z=z)
        generated = synth(ref_mel, z=z_ref.to(dev))[0].cpu()
        if precision == "fp32":
            fp32_audio = generated
        diff = (back - clip).float()
        row["roundtrip_max_abs"] = diff.abs().max().item()
        row["roundtrip_rms"] = diff.pow(2).mean().sqrt().item()
        row["log_mel_l1_vs_fp32"] = (
            (log_mel(generated) - log_mel(fp32_audio)).abs().mean().item() if fp32_audio is not None else math.nan
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    fp32 = table[table.precision == "fp32"]
    table["speedup_vs_fp32"] = float(fp32.wall_s.iloc[0]) / table.wall_s if len(fp32) else math.nan
    return table


def batch_sweep(
    name: str,
    model: WaveFlow,
    mel: torch.Tensor,
    n_clips: int,
    batch_sizes: Iterable[int],
    **kwargs: Any,
) -> pd.DataFrame:
    """Energy per audio second of synthesising ``n_clips`` copies of ``mel`` at each batch size.

    The same total audio is generated at every batch size, so the rows compare directly. ``optimal``
    marks the lowest energy per audio second measured in this sweep and ``within_noise`` every batch
    size within :data:`SWEEP_NOISE` of it: those cannot be told apart from the optimum by this meter,
    so a single "best batch" is only a finding when no other size is within the margin.
    """
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch_sweep: batch sizes {sizes}; expected positive integers")
    rows = []
    for b in sizes:
        row = measure_inference(name, model, [mel] * n_clips, batch_size=b, **kwargs)
        rows.append(row)
    return mark_optimum(pd.DataFrame(rows))


# ----------------------------------------------------------------------------------------------
def measure_quality(
    name: str, model: WaveFlow, clips: Iterable, *, sigma: float = 1.0, seed: int = 0, mos: bool = True
) -> dict[str, Any]:
    """Quality of one model on held-out clips: NLL, resynthesis distances and predicted MOS.

    Resynthesis uses the fast path; the predicted MOS is DNSMOS P.808 (``quality.PRED_MOS_LABEL``),
    not a listening test. Returns the summary row of :func:`waveflow.measures.quality.evaluate_model`.
    """
    rows = quality.evaluate_model(model, clips, synth_fn=synthesize, sigma=sigma, seed=seed, mos=mos)
    summary = quality.summarize(rows)
    return {
        "config": name,
        "clips": len(rows),
        "audio_s": summary["duration_s"],
        "nll_nats": summary["nll_nats_per_sample"],
        "nll_bits": summary["nll_bits_per_sample"],
        "log_mel_l1": summary["log_mel_l1"],
        "mcd_db": summary["mcd_db"],
        "pred_mos": summary.get(f"{quality.PRED_MOS_COLUMN}_resynth", math.nan),
        "pred_mos_original": summary.get(f"{quality.PRED_MOS_COLUMN}_original", math.nan),
        "pred_mos_label": quality.PRED_MOS_LABEL,
    }


# ----------------------------------------------------------------------------------------------
def measured_summary(training: pd.DataFrame, inference: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """One row per config joining our E_train, E_gen and quality, the input of notebook 05.

    Columns: ``config, params, nll_nats, nll_bits, pred_mos, e_train_kwh, e_train_kwh_low,
    e_train_kwh_high, e_train_kwh_kind, e_gen_wh, e_gen_wh_low, e_gen_wh_high, e_gen_wh_kind``; the
    ``*_kind`` columns say how each energy was obtained and ``*_low``/``*_high`` bound it (equal to
    the value for a measurement; missing bound columns in older tables are filled with the value).
    ``pred_mos`` is DNSMOS P.808's prediction (not a listening test); notebook 05 turns it into
    ``1 - pred_mos / 5`` to mirror the paper's ``1 - %MOS`` axis.
    """
    training = _with_bounds(training, "e_train_kwh_extrapolated", "e_train_kwh")
    inference = _with_bounds(inference, "e_gen_wh", "e_gen_wh")
    t = training[["config", "params", "e_train_kwh_extrapolated", "e_train_kwh_low", "e_train_kwh_high"]]
    t = t.assign(e_train_kwh_kind=training["e_train_label"]).rename(columns={"e_train_kwh_extrapolated": "e_train_kwh"})
    g = inference[["config", "e_gen_wh", "e_gen_wh_low", "e_gen_wh_high"]]
    g = g.assign(e_gen_wh_kind=inference["e_gen_label"])
    q = quality[["config", "nll_nats", "nll_bits", "pred_mos"]]
    out = t.merge(g, on="config").merge(q, on="config")
    return out[list(SUMMARY_COLUMNS)]


#: Columns of :func:`measured_summary`, in order.
SUMMARY_COLUMNS = (
    "config",
    "params",
    "nll_nats",
    "nll_bits",
    "pred_mos",
    "e_train_kwh",
    "e_train_kwh_low",
    "e_train_kwh_high",
    "e_train_kwh_kind",
    "e_gen_wh",
    "e_gen_wh_low",
    "e_gen_wh_high",
    "e_gen_wh_kind",
)


def _with_bounds(table: pd.DataFrame, value: str, stem: str) -> pd.DataFrame:
    """``table`` with ``{stem}_low``/``_high`` columns, equal to ``value`` where a table has none."""
    out = table.copy()
    for side in ("low", "high"):
        if f"{stem}_{side}" not in out:
            out[f"{stem}_{side}"] = out[value]
    return out
