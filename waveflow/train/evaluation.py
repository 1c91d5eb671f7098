"""Held-out scores during training: the validation NLL and the fixed crops of the quality marks."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..audio import whole_hops
from ..data import LJSpeech
from ..measures.quality import heldout_nll
from ..model import WaveFlow
from .metrics import append_metrics
from .options import TrainConfig

LN2 = math.log(2.0)


def validation_nll(model: WaveFlow, dataset: LJSpeech, max_clips: int, max_samples: int) -> float:
    """Held-out NLL (nats/sample, sample-weighted) of the first validation clips, each cut to
    ``max_samples`` (a multiple of the hop; 0 = whole clips) to bound the cost during training."""
    n = whole_hops(max_samples) if max_samples else None
    clips = [(u.id, u.audio[:n]) for u in dataset.utterances(max_clips or None)]
    clips = [(i, a) for i, a in clips if a.shape[0] > 512 and a.shape[0] % model.config.n_height == 0]
    return heldout_nll(model, clips)["nats_per_sample"] if clips else float("nan")


def heldout_crops(dataset: LJSpeech, max_clips: int, samples: int, data: str) -> list[tuple[str, torch.Tensor]]:
    """The fixed held-out crops of the quality marks: the first ``samples`` samples (rounded down to
    whole hops) of the first ``max_clips`` validation clips that are at least that long.

    Fixed crops (not random ones) make successive marks and configurations comparable; the same
    crops every time also keep the evaluation away from the training RNG. Raises a ValueError when no
    clip of the split is long enough, rather than scoring nothing.
    """
    n = whole_hops(samples) if samples else 0
    utts = dataset.utterances()
    if not n:
        n = min(whole_hops(u.audio.shape[0]) for u in utts) if utts else 0
    crops = [(u.id, u.audio[:n]) for u in utts if u.audio.shape[0] >= n > 0][: max_clips or None]
    if not crops:
        longest = max((u.audio.shape[0] for u in utts), default=0)
        raise ValueError(
            f"--eval-every: no clip of the validation split of {data} is at least {n} samples long "
            f"(longest: {longest}); expected a smaller --val-samples or more held-out audio"
        )
    return crops


def validate(
    config: TrainConfig,
    model: WaveFlow,
    val_set: LJSpeech,
    step: int,
    marks: list[dict[str, Any]],
    metrics_path: Path,
    start_time: float,
) -> float:
    """Validation NLL (nats/sample) at ``step``, logged. A quality mark at this step already scored
    the held-out crops: its NLL is reused rather than paid for twice."""
    marked = marks and marks[-1]["step"] == step and "heldout_nll_bits" in marks[-1]
    val = (
        marks[-1]["heldout_nll_bits"] * LN2
        if marked
        else validation_nll(model, val_set, config.val_clips, config.val_samples)
    )
    record = {
        "kind": "validation",
        "step": step,
        "val_nll": val,
        "val_bits": val / LN2,
        "wall": time.perf_counter() - start_time,
    }
    append_metrics(metrics_path, record)
    return val
