"""E_gen: the energy to generate 100 s of 22.05 kHz audio with WaveFlow's fast synthesis.

``measure_inference`` times and meters the fast synthesis of a set of mel spectrograms and reports
E_gen with FLOPs per audio second and energy per GFLOP; ``energy_mels`` and ``longest_clips`` make
the mels it meters (the paper's 10 x 10 s). ``compare_precisions`` sets float32 against reduced
precisions by speed, energy and error, and ``batch_sweep`` compares synthesis batch sizes by energy
per audio second on this machine, with a noise margin (:data:`SWEEP_NOISE`).

Every energy number carries its method (``measured:...`` or ``estimated:...`` from the meter), its
interval when estimated (``*_low``/``*_high`` columns) and, when it was scaled beyond what was run,
the word ``extrapolated``.
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
from ..data import LJSpeech, validate_dataset
from ..devices import resolve_device
from ..energy import J_PER_WH, EnergyMeter, EnergyRecord
from ..measures.flops import count as count_flops
from ..model import FastSynthesizer, WaveFlow, load_checkpoint
from .metered import bounds, energy_columns, log_record

E_GEN_SECONDS = 100.0  # E_gen is the energy to generate 100 s of audio


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


def _check_mels(mels: list[torch.Tensor]) -> None:
    """ValueError unless ``mels`` holds at least one mel and all share one shape (to batch)."""
    if not mels:
        raise ValueError("measure_inference: no mels given; expected at least one (n_mels, frames) tensor")
    if len({m.shape for m in mels}) != 1:
        raise ValueError(
            f"measure_inference: mels must share one shape to batch, got {sorted({tuple(m.shape) for m in mels})}"
        )


def _warm_up(
    synth: FastSynthesizer, mels: list[torch.Tensor], batch_size: int, seed: int, dev: torch.device, cuda_graphs: bool
) -> None:
    """Unmetered synthesis before the meter starts.

    With CUDA graphs, the same batches: every shape the metered loop replays is recorded. Otherwise
    one short call: allocator and kernel selection.
    """
    if cuda_graphs:
        _synthesize_all(synth, mels, batch_size, seed, dev)
    else:
        synth(mels[0][:, : min(mels[0].shape[-1], 3)].unsqueeze(0).to(dev))


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
    :func:`~waveflow.experiments.measure.measure_training`.
    """
    _check_mels(mels)
    dev = resolve_device(str(device))
    if not isinstance(model, WaveFlow):
        model, _ = load_checkpoint(model, device=dev)
    model = model.to(dev).eval()
    synth = FastSynthesizer(model, precision=precision, cuda_graphs=cuda_graphs)
    if warmup:
        _warm_up(synth, mels, batch_size, seed, dev, cuda_graphs)
    label = f"synthesize {name}" + ("" if precision == "fp32" else f" {precision}") + (" cuda-graphs" * cuda_graphs)
    with EnergyMeter(label, intensity=intensity, pue=pue, warn=False) as meter:
        seconds = _synthesize_all(synth, mels, batch_size, seed, dev)
    log_record(meter.record, log)
    setup = {"clips": len(mels), "batch_size": batch_size, "precision": precision, "cuda_graphs": cuda_graphs}
    return _inference_row(name, model, setup, seconds, meter.record)


def _inference_row(
    name: str, model: WaveFlow, setup: dict[str, Any], seconds: float, record: EnergyRecord
) -> dict[str, Any]:
    """The tidy E_gen row of one metered synthesis of ``seconds`` of audio; ``setup`` holds the
    ``clips, batch_size, precision, cuda_graphs`` columns."""
    flops_per_s = count_flops(model.config, "synthesis", name).flops_per_audio_second
    flops = flops_per_s * seconds
    exact = math.isclose(seconds, E_GEN_SECONDS, rel_tol=1e-3)
    low, high = bounds(record)
    return {
        "config": name,
        "h": model.config.n_height,
        "r": model.config.res_channels,
        **setup,
        "audio_s": seconds,
        "wall_s": record.wall_s,
        "rtf": record.wall_s / seconds,
        **energy_columns(record, low, high),
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
