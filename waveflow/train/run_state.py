"""What a training run holds between its steps: the model, the optimiser and the step count, with
what training has spent so far, the checkpoints that keep it and the quality marks that report it.

Every rank holds a :class:`RunState`; only rank 0 writes (checkpoints, the metrics log). Its spend
is counted around training spans only (:class:`~waveflow.train.spend.TrainingSpend`): a checkpoint's
write and a mark's evaluation pause it, so the budgets and the marks charge training alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import LJSpeech
from ..measures.quality import heldout_nll
from ..model import WaveFlow, rng_state, save_checkpoint, set_rng_state
from . import distributed
from .metrics import append_metrics
from .options import TrainConfig
from .spend import TrainingSpend


@dataclass
class RunState:
    """One rank's run between two steps.

    Args:
        ctx: the run's process group (or its single-process stand-in).
        config: the run's options.
        model, optimizer: what trains; restored from the checkpoint on a resume.
        train_set: the training split (every rank draws the global batch and keeps its ``rows``).
        val_set: the validation split (rank 0 only; None elsewhere).
        crops: the fixed held-out crops the marks score (rank 0, when marks are on).
        rows: this rank's rows of every global batch.
        last: the run's ``last.pt`` checkpoint.
        step: steps done so far.
        spend: the training spend; an unmetered one until the meter starts.
        meter: this rank's energy meter while it runs (None: not metered, or stopped).
        metered: whether the run is metered at all (stays True once the meter has stopped).
        paths: the energy log and its device table (None: not metered).
    """

    ctx: distributed.DistContext
    config: TrainConfig
    model: WaveFlow
    optimizer: torch.optim.Optimizer
    train_set: LJSpeech
    val_set: LJSpeech | None
    crops: list[tuple[str, torch.Tensor]]
    rows: slice
    last: Path
    step: int = 0
    spend: TrainingSpend = field(default_factory=TrainingSpend)
    meter: distributed.RankMeter | None = None
    metered: bool = False
    paths: tuple[Path, Path] | None = None

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the rank that writes."""
        return self.ctx.info.is_main

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def spent_total(self) -> tuple[float, float, float, float]:
        """(joules, low, high, seconds) of every rank so far (a collective: every rank calls it)."""
        spend = self.spend
        j, secs = spend.now()
        if not self.metered:
            return math.nan, math.nan, math.nan, secs
        running = 0.0 if math.isnan(j) else j - spend.joules  # the open span's joules
        ctx = self.ctx
        return (
            ctx.total(0.0 if math.isnan(j) else j),
            ctx.total(spend.low + running * (spend.low / spend.joules if spend.joules else 1.0)),
            ctx.total(spend.high + running * (spend.high / spend.joules if spend.joules else 1.0)),
            secs,
        )

    def spent_state(self) -> dict[str, Any]:
        """What every rank spent so far, for a checkpoint (a collective; pauses the count: a
        checkpoint's write is not training)."""
        self.spend.pause()
        joules, low, high, _ = self.spent_total()
        return {"energy_j": joules, "energy_j_low": low, "energy_j_high": high, "wall_s": self.spend.seconds}

    def checkpoint(self, path: Path, spent: dict[str, Any]) -> None:
        """Save the model, the optimiser, the step and every RNG, with the options, the world size
        and ``spent`` that a resume checks and carries on (rank 0)."""
        ctx = self.ctx
        extra = {"train": self.config.to_dict(), "world_size": ctx.world_size, "backend": ctx.backend, "spent": spent}
        save_checkpoint(path, self.model, self.optimizer, self.step, extra=extra)

    def mark(self) -> dict[str, Any]:
        """Held-out NLL and what training has spent so far (spend paused; RNG untouched)."""
        spend, config, step = self.spend, self.config, self.step
        spend.pause()
        joules, low, high, secs = self.spent_total()
        metered = self.metered
        record: dict[str, Any] = {
            "kind": "mark",
            "step": step,
            "examples": step * config.batch_size,
            "energy_j": joules,
            "energy_method": spend.method if metered else "not metered",
            "energy_j_low": low if metered and spend.estimated else None,
            "energy_j_high": high if metered and spend.estimated else None,
            "wall_s": secs,
        }
        if self.main:
            saved = rng_state()
            try:
                record["heldout_nll_bits"] = heldout_nll(self.model, self.crops)["bits_per_sample"]
            finally:
                set_rng_state(saved)
            append_metrics(self.metrics_path, record)
        return record
