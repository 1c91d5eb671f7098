"""``waveflow evaluate``: every quality measure of WaveFlow checkpoints on held-out clips, one row per clip.

:mod:`~waveflow.measures.quality` holds the measures, usable on any model's audio; this module runs
them on this project's checkpoints: each clip is resynthesised from its mel with a seed of its own
(so a rerun scores the same audio), scored against the original, and summarised per checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import SAMPLE_RATE
from ..data import LJSpeech
from ..devices import resolve_device
from ..files import atomic_write
from ..model import FastSynthesizer, load_checkpoint, synthesize
from ..paths import LJSPEECH_MINI
from .quality import (
    PRED_MOS_COLUMN,
    PRED_MOS_LABEL,
    SUMMARY_ID,
    SynthFn,
    _as_utterances,
    _model_device,
    clip_nll,
    log_mel_l1,
    mel_cepstral_distortion,
    predicted_mos,
)


# ------------------------------------------------------------------------------------------
# one model on a list of clips
def _infer(model: torch.nn.Module, mel: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
    return model.infer(mel, sigma=sigma, generator=generator)


def _clip_generator(seed: int, clip_id: str, device: torch.device) -> torch.Generator:
    """The latent of a clip depends on (seed, clip id) only, not on the order of evaluation."""
    value = int(hashlib.sha1(f"{seed}:{clip_id}".encode()).hexdigest()[:15], 16)
    return torch.Generator(device=device).manual_seed(value)


def evaluate_model(
    model: torch.nn.Module,
    clips: LJSpeech | Iterable,
    synth_fn: SynthFn | None = None,
    sigma: float = 1.0,
    seed: int = 0,
    mos: bool = True,
    reference_mos: dict[str, float] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Per-clip quality rows of one model: NLL, resynthesis distances, predicted MOS.

    Args:
        model: a :class:`~waveflow.WaveFlow` (evaluated in eval mode, restored afterwards).
        clips: a dataset split, Utterances, audio tensors or ``(id, audio)`` pairs.
        synth_fn: ``synth_fn(model, mel, sigma=..., generator=...) -> audio``; default
            ``model.infer`` (the reference path; :func:`waveflow.synthesis.synthesize` is faster).
        sigma: temperature of the synthesis latent (default 1.0, the training prior).
        seed: with the clip id, seeds each clip's latent (default 0).
        mos: compute the predicted MOS of the resynthesis and of the original (default True).
        reference_mos: cache of the originals' predicted MOS by clip id, filled in place, so
            evaluating several checkpoints scores each original once.

    Returns:
        one dict per clip: ``clip_id, duration_s, n_samples, nll_nats_per_sample,
        nll_bits_per_sample, log_mel_l1, mcd_db, synth_s`` and, with ``mos``,
        ``pred_mos_dnsmos_p808_resynth`` and ``pred_mos_dnsmos_p808_original``. A resynthesis
        that is not finite gets NaN distances and MOS (and a warning) instead of stopping the run.
    """
    synth_fn = synth_fn or _infer
    device = _model_device(model)
    items = list(_as_utterances(clips))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="evaluate", unit="clip")
    was_training = model.training
    model.eval()
    rows = []
    try:
        for utt in items:
            nll = clip_nll(model, utt.audio, utt.mel)
            start = time.perf_counter()
            with torch.no_grad():
                est = synth_fn(model, utt.mel.to(device), sigma=sigma, generator=_clip_generator(seed, utt.id, device))
            est = est.detach().float().cpu().reshape(-1)
            row: dict[str, Any] = {
                "clip_id": utt.id,
                "duration_s": utt.audio.shape[-1] / SAMPLE_RATE,
                "n_samples": utt.audio.shape[-1],
                "nll_nats_per_sample": nll,
                "nll_bits_per_sample": nll / math.log(2),
                "synth_s": time.perf_counter() - start,
            }
            finite = bool(torch.isfinite(est).all())
            if not finite:
                warnings.warn(
                    f"evaluate_model: resynthesis of {utt.id} is not finite; its distances and MOS are NaN",
                    stacklevel=2,
                )
            row["log_mel_l1"] = log_mel_l1(utt.audio, est) if finite else math.nan
            row["mcd_db"] = mel_cepstral_distortion(utt.audio, est) if finite else math.nan
            if mos:
                row[f"{PRED_MOS_COLUMN}_resynth"] = predicted_mos(est) if finite else math.nan
                cache = reference_mos if reference_mos is not None else {}
                if utt.id not in cache:
                    cache[utt.id] = predicted_mos(utt.audio)
                row[f"{PRED_MOS_COLUMN}_original"] = cache[utt.id]
            rows.append(row)
    finally:
        model.train(was_training)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``SUMMARY`` row: NLL weighted by samples, other measures averaged over clips (NaN ignored)."""
    if not rows:
        raise ValueError("summarize: no rows; expected at least one evaluated clip")
    n = np.array([r["n_samples"] for r in rows], dtype=np.float64)
    out: dict[str, Any] = {
        "clip_id": SUMMARY_ID,
        "duration_s": sum(r["duration_s"] for r in rows),
        "n_samples": int(n.sum()),
    }
    nll = float(np.sum(n * np.array([r["nll_nats_per_sample"] for r in rows])) / n.sum())
    out.update(nll_nats_per_sample=nll, nll_bits_per_sample=nll / math.log(2))
    for key in rows[0]:
        if key not in out and key != "clip_id":
            values = np.array([r[key] for r in rows], dtype=np.float64)
            out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    return out


# ------------------------------------------------------------------------------------------
# CLI: python -m waveflow evaluate
def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``evaluate``."""
    parser.add_argument("--checkpoint", nargs="+", required=True, metavar="CKPT", help="checkpoint file(s) to evaluate")
    parser.add_argument(
        "--data", type=Path, default=LJSPEECH_MINI, help="LJSpeech-format folder (default: the bundled mini set)"
    )
    parser.add_argument(
        "--split", choices=("test", "validation"), default="test", help="held-out split to score (default: test)"
    )
    parser.add_argument(
        "--sigma", type=float, default=1.0, help="synthesis temperature (default 1.0, the training prior)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="CSV to write: one row per clip and checkpoint, plus SUMMARY rows"
    )
    parser.add_argument(
        "--max-clips", type=int, default=None, help="score only the first N clips of the split (default: all)"
    )
    parser.add_argument("--no-mos", action="store_true", help=f"skip the {PRED_MOS_LABEL}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthesis latents (default 0)")
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA when available, else CPU), cpu, cuda, cuda:1 (auto)"
    )


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves half a table."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def run_evaluate(args: argparse.Namespace) -> int:
    """Score each checkpoint on the split; rewrite ``--out`` after each so partial results survive."""
    if not (math.isfinite(args.sigma) and args.sigma >= 0):
        raise ValueError(f"--sigma {args.sigma}: expected a finite temperature >= 0")
    if args.max_clips is not None and args.max_clips < 1:
        raise ValueError(f"--max-clips {args.max_clips}: expected a positive number of clips")
    for ckpt in args.checkpoint:
        if not Path(ckpt).is_file():
            raise FileNotFoundError(f"--checkpoint {ckpt} does not exist")
    device = resolve_device(args.device or "auto")
    dataset = LJSpeech(args.data, split=args.split)
    clips = list(dataset.utterances(args.max_clips))
    if not clips:
        raise ValueError(f"--data {args.data}: the {args.split!r} split is empty; expected held-out clips")
    reference_mos: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for ckpt in args.checkpoint:
        model, info = load_checkpoint(ckpt, device=device)
        fast = FastSynthesizer(model)

        def synth(_model, mel, sigma, generator, _fast=fast):
            return synthesize(_fast, mel, sigma=sigma, generator=generator)

        per_clip = evaluate_model(
            model,
            clips,
            synth_fn=synth,
            sigma=args.sigma,
            seed=args.seed,
            mos=not args.no_mos,
            reference_mos=reference_mos,
            progress=True,
        )
        config = info.get("config")
        head = {
            "checkpoint": str(ckpt),
            "step": info.get("step", ""),
            "n_height": getattr(config, "n_height", ""),
            "res_channels": getattr(config, "res_channels", ""),
            "split": args.split,
            "sigma": args.sigma,
        }
        summary = summarize(per_clip)
        rows += [{**head, **r} for r in per_clip] + [{**head, **summary}]
        _write_csv(args.out, rows)
        line = (
            f"{ckpt}: NLL {summary['nll_nats_per_sample']:.4f} nats/sample, "
            f"log-mel L1 {summary['log_mel_l1']:.3f}, MCD {summary['mcd_db']:.2f} dB"
        )
        if not args.no_mos:
            resynth, original = summary[f"{PRED_MOS_COLUMN}_resynth"], summary[f"{PRED_MOS_COLUMN}_original"]
            line += f", {PRED_MOS_LABEL} {resynth:.2f} (originals {original:.2f})"
        print(line)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0
