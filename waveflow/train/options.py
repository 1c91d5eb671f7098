"""What a training run is asked to do and what it gives back.

:class:`TrainConfig` checks every option when it is built, so a bad value fails with its name
before any data is read; :class:`TrainResult` is what :func:`waveflow.train.train` returns. The
paper's batch and step schedule live here too, since the Table 1/2 workflows size runs with them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data import DEFAULT_SEGMENT, DEFAULT_VALIDATION_FRACTION
from ..energy.merge import MergedEnergy
from ..model import WaveFlowConfig, from_dict_checked
from ..paths import LJSPEECH_MINI, RUNS

PAPER_BATCH = 8  # clips per step in WaveFlow and Douwes et al.

#: Steps of the paper's training schedule by residual channels r (Section 5.1 of Douwes et al.). The
#: paper's sentence lists r = 96 both with the 3 M-step "lighter" models and with the 2 M-step
#: "medium" ones; we read 3 M, the only reading consistent with its Table 2 (at 2 M steps WF3's
#: energy per step, 362.7 kWh/M, would exceed WF4's, 322.4 kWh/M, although WF3 is the smaller model).
PAPER_STEPS = {64: 3_000_000, 96: 3_000_000, 128: 2_000_000, 256: 1_000_000}

#: Options that decide which batches are drawn and how the optimiser steps: a resume must keep them.
RESUME_MUST_MATCH = ("data", "batch_size", "segment", "lr", "grad_clip", "seed", "validation_fraction")


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Options of a training run (the model itself is described by ``model``).

    Args:
        model: the WaveFlow configuration.
        data: LJSpeech-format folder (default: the bundled ``data/ljspeech-mini``).
        out: run folder (default ``build/runs/<config name>``).
        steps: total optimisation steps to reach (a resumed run continues up to this step).
        batch_size: clips per step (8, as in the paper).
        segment: crop length in samples (16,000, as in the paper).
        lr: Adam learning rate (2e-4).
        grad_clip: max global gradient norm (5.0, as in the public PyTorch WaveFlow); 0 disables.
        seed: seed of initialisation, batches and crops.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available).
        val_every: steps between validation NLL evaluations (0: only at the end).
        val_clips: validation clips evaluated (the first ones of the split, in metadata order);
            0 skips validation altogether (e.g. while metering the training steps alone).
        val_samples: each validation clip is cut to its first ``val_samples`` samples (a multiple
            of the hop) to bound the cost on CPUs; 0 evaluates whole clips.
        validation_fraction: share of the clips held out for validation by the hash split (0.01, about
            131 clips of LJSpeech). A small folder needs more to rank models: the bundled 32 clips hold
            out one clip at 0.01, six at 0.2. The clips it holds out are never trained on.
        checkpoint_every: steps between periodic checkpoints kept as ``step_NNNNNNN.pt`` (0: none);
            ``last.pt`` is rewritten at every validation and at the end.
        log_every: steps between metrics-log lines (the training loss of every step is logged
            when 1).
        name: label of the run in logs and notebooks.
        energy_budget_j: stop once the training energy (all ranks, evaluation excluded, counted
            across resumes) reaches this many joules; None: no energy budget. Needs the meter.
        time_budget_s: stop once the training wall seconds (evaluation excluded, counted across
            resumes) reach this; None: no time budget.
        eval_every: steps between quality marks (held-out NLL + training energy); 0: no marks. At a
            step with a mark, the validation record reuses the mark's NLL (the same model, scored once).
    """

    model: WaveFlowConfig = field(default_factory=WaveFlowConfig)
    data: str = str(LJSPEECH_MINI)
    out: str = ""
    steps: int = 100
    batch_size: int = PAPER_BATCH
    segment: int = DEFAULT_SEGMENT
    lr: float = 2e-4
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    val_every: int = 50
    val_clips: int = 4
    val_samples: int = 4 * 22_016  # ~4 s: a whole number of hops, hence a multiple of every h
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    checkpoint_every: int = 0
    log_every: int = 1
    name: str = "run"
    energy_budget_j: float | None = None
    time_budget_s: float | None = None
    eval_every: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = WaveFlowConfig.from_dict(self.model)
        for name in ("steps", "batch_size", "segment"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {value!r}")
        for name in ("energy_budget_j", "time_budget_s"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, positive_number(value, f"TrainConfig.{name}"))
        if not (isinstance(self.validation_fraction, (int, float)) and 0 < self.validation_fraction < 0.5):
            raise ValueError(
                f"TrainConfig.validation_fraction: expected a fraction in (0, 0.5), got {self.validation_fraction!r}"
            )
        for name in ("val_every", "val_clips", "val_samples", "checkpoint_every", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name}: expected an integer >= 0, got {value!r}")
        if not isinstance(self.log_every, int) or self.log_every < 1:
            raise ValueError(f"TrainConfig.log_every: expected a positive integer, got {self.log_every!r}")
        if self.segment % self.model.n_height:
            raise ValueError(f"TrainConfig.segment: {self.segment} is not a multiple of h={self.model.n_height}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr: expected a finite positive learning rate, got {self.lr!r}")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise ValueError(f"TrainConfig.grad_clip: expected a finite value >= 0, got {self.grad_clip!r}")
        if not self.out:
            self.out = str(RUNS / self.name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` (e.g. a run's ``run.json``), rejecting unknown keys by name."""
        return from_dict_checked(cls, data)


@dataclass
class TrainResult:
    """What a run produced (``energy`` only on rank 0 of a run trained with ``energy=...``)."""

    out: Path
    step: int
    last_checkpoint: Path
    final_train_loss: float
    final_val_nll: float | None
    wall_seconds: float
    samples_seen: int
    history: list[dict[str, Any]]
    world_size: int = 1
    energy: MergedEnergy | None = None
    spent: dict[str, Any] = field(default_factory=dict)
    stopped_by: str = "steps"
    marks: list[dict[str, Any]] = field(default_factory=list)


def positive_number(value: Any, what: str) -> float:
    """``value`` as a finite float > 0, or a one-line ValueError naming ``what`` (budgets)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a positive number, got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise ValueError(f"{what}: expected a positive number, got {value!r}")
    return number
