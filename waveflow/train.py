"""Training: maximum likelihood on random crops, resumable bit for bit.

A run lives in one folder::

    <out>/run.json                 the training options and model config of the run
    <out>/metrics.jsonl            append-only log, one JSON object per line
    <out>/checkpoints/last.pt      the latest checkpoint (atomic: temp file + rename)
    <out>/checkpoints/step_NNNNNNN.pt  periodic checkpoints

Exact resumption: batches are a pure function of ``(seed, step)`` (:meth:`LJSpeech.batch`), and a
checkpoint holds the model, the Adam state, the step and every RNG state. Resuming from the
checkpoint of step ``s`` therefore replays steps ``s+1 ...`` with the same batches from the same
state, and on a CPU the loss sequence equals that of an uninterrupted run bit for bit
(``tests/test_train.py``). On CUDA, cuDNN's convolution backward may reduce in a different order
from run to run, so losses agree to float rounding only, unless ``deterministic=True`` is passed
(slower kernels). A resume must use the run's data, seed, batch, segment, learning rate and
clipping; a mismatch is an error rather than a silently different run.
Steps that were logged after the last checkpoint of an interrupted run are logged again when
they are replayed; readers keep the last record per step (:func:`read_metrics`).

A NaN or infinite loss or gradient stops the run before the optimiser touches the weights, with
a :class:`TrainingDiverged` error naming the step; the last good checkpoint is left intact.

Several GPUs or nodes: ``torchrun --nproc_per_node=N -m waveflow train ...`` trains with
DistributedDataParallel (:mod:`waveflow.distributed`). ``batch_size`` stays the *global* batch:
rank ``r`` of ``W`` trains on rows ``r*B/W .. (r+1)*B/W`` of the batch a single process would draw
(:meth:`LJSpeech.batch` is a pure function of ``(seed, step)``), and DDP averages the gradients
over these equal shares, so one step is the same step as a single process's on the global batch,
to float rounding. The learning rate is used as given, never rescaled with the world size. Only
rank 0 writes checkpoints, the metrics log and the energy records; each checkpoint and the start
record of the log name the world size. A resume may use any world size that divides the batch.

Budgets and quality marks (``--energy-budget J``, ``--time-budget S``, ``--eval-every N``): a run
stops at the first of ``steps``, the energy budget and the time budget. Both count **training**
only: :class:`TrainingSpend` reads the meter's counters around the training steps and leaves out
the held-out evaluations and checkpoint writes, so a configuration with slow evaluation is not
charged for it. Under DDP the budget compares the merged total over ranks (``ctx.total``). What was
spent is kept in every checkpoint (``extra["spent"]``), so a resumed run's budget counts what was
spent before it. Every ``eval_every`` steps a ``mark`` record gives step, examples seen, training
energy (method, low/high bounds for an estimate), training wall seconds and held-out NLL in bits per
sample on fixed held-out crops (the first ``val_samples`` samples of the first ``val_clips``
validation clips that are at least that long). The evaluation saves and restores every RNG, so a
run with marks follows the same weights as a run without (``tests/test_train.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import distributed
from .audio import whole_hops
from .data import DEFAULT_SEGMENT, LJSpeech, validate_dataset
from .devices import use_deterministic_kernels
from .energy import append_record, merge_records
from .energy.merge import MergedEnergy, append_devices
from .energy.rapl import mirrored_zones
from .files import atomic_write
from .model import (
    WaveFlow,
    WaveFlowConfig,
    from_dict_checked,
    get_config,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .paths import LJSPEECH_MINI, RUNS
from .quality import heldout_nll

LN2 = math.log(2.0)
PAPER_BATCH = 8  # clips per step in WaveFlow and Douwes et al.
#: Steps of the paper's training schedule by residual channels r (Section 5.1 of Douwes et al.). The
#: paper's sentence lists r = 96 both with the 3 M-step "lighter" models and with the 2 M-step
#: "medium" ones; we read 3 M, the only reading consistent with its Table 2 (at 2 M steps WF3's
#: energy per step, 362.7 kWh/M, would exceed WF4's, 322.4 kWh/M, although WF3 is the smaller model).
PAPER_STEPS = {64: 3_000_000, 96: 3_000_000, 128: 2_000_000, 256: 1_000_000}
#: Options that decide which batches are drawn and how the optimiser steps: a resume must keep them.
RESUME_MUST_MATCH = ("data", "batch_size", "segment", "lr", "grad_clip", "seed")


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


# ----------------------------------------------------------------------------------------------
# append-only metrics log
def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the line being written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        # A crash mid-write can leave a partial last line; start a new line so it stays one bad line.
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(path: str | os.PathLike, kind: str | None = "train") -> list[dict[str, Any]]:
    """Records of a metrics log, the last one per (kind, step), in step order.

    A partial last line (crash mid-write) is ignored.
    """
    records: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or rec.get("kind") == kind:
                records[(rec.get("kind", ""), int(rec.get("step", -1)))] = rec
    return [records[k] for k in sorted(records, key=lambda k: (k[1], k[0]))]


# ----------------------------------------------------------------------------------------------
def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """Where a run folder keeps its latest checkpoint (``<run>/checkpoints/last.pt``)."""
    return Path(run_dir) / "checkpoints" / "last.pt"


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


def _check_finite(loss: torch.Tensor, grad_norm: torch.Tensor | None, step: int, ckpt: Path) -> None:
    what = None
    if not torch.isfinite(loss):
        what = f"the loss is {loss.item()}"
    elif grad_norm is not None and not torch.isfinite(grad_norm):
        what = f"the gradient norm is {grad_norm.item()}"
    if what:
        kept = f"the last good checkpoint {ckpt} is intact" if ckpt.exists() else "no checkpoint had been written yet"
        raise TrainingDiverged(
            f"training diverged at step {step}: {what}; the weights were not updated and {kept}. "
            "Try a lower --lr or a smaller --grad-clip."
        )


class _NegLogLikelihood(torch.nn.Module):
    """The training loss as a module, so that DistributedDataParallel sees the forward pass it
    must synchronise (``log_likelihood`` is a method, which DDP's wrapper would not intercept)."""

    def __init__(self, model: WaveFlow) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return -self.model.log_likelihood(audio, mel)


def _optimisation_step(
    loss_fn: torch.nn.Module,
    model: WaveFlow,
    optimizer: torch.optim.Optimizer,
    audio: torch.Tensor,
    mel: torch.Tensor,
    grad_clip: float,
    step: int,
    last: Path,
    ctx: distributed.DistContext,
) -> tuple[float, float]:
    """One maximum-likelihood step; returns ``(loss of the global batch, gradient norm)``.

    The finiteness checks come before ``optimizer.step()``, so a diverged step never touches the
    weights. Under DDP the loss is averaged over the ranks before it is checked and the gradient
    norm is taken after DDP averaged the gradients, so every rank sees the same numbers and stops
    at the same step instead of one rank waiting for the others forever.
    """
    loss = loss_fn(audio, mel)
    global_loss = ctx.mean(loss.detach())
    _check_finite(global_loss, None, step, last)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
    _check_finite(global_loss, grad_norm, step, last)
    optimizer.step()
    return global_loss.item(), grad_norm.item()


def _read_resume(config: TrainConfig, last: Path) -> dict[str, Any]:
    """Read and check the checkpoint to resume from (on rank 0, which broadcasts it).

    Refuses a checkpoint of another model configuration, and one whose run used other options
    among :data:`RESUME_MUST_MATCH` (they decide the batches and the optimiser's path). A
    different world size is allowed when it divides the global batch, with a warning.
    """
    out = last.parent.parent
    if not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}; expected a run started with --out {out}")
    payload = read_checkpoint(last, map_location="cpu")
    saved = WaveFlowConfig.from_dict(payload["config"])
    if saved != config.model:
        raise ValueError(f"--resume: checkpoint {last} was trained with {saved}, not {config.model}")
    before = payload.get("extra", {}).get("train", {})
    now = config.to_dict()
    changed = {k: (before[k], now[k]) for k in RESUME_MUST_MATCH if k in before and before[k] != now[k]}
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(
            f"--resume: options differ from the run in {out} ({detail}); expected the same values, "
            "or start a new run with another --out"
        )
    return payload


def world_size_warning(before: int, now: int, batch_size: int) -> str:
    """What changes when a run resumes with another world size (the same global batch either way)."""
    return (
        f"--resume: the run in this folder was trained with world size {before}, now {now}: the data order per rank "
        f"changes (each of the {now} ranks now takes {batch_size // now} of the {batch_size} clips of every global "
        "batch). The global batches, the averaged gradient and the learning rate are the same, so the run follows "
        "the same path, but the gradients are summed in another order: losses match an uninterrupted run to float "
        "rounding, not bit for bit."
    )


def _restore(payload: dict[str, Any], model: WaveFlow, optimizer: torch.optim.Optimizer) -> int:
    """Load a checked checkpoint payload into the model and optimiser, restore every RNG, return its step."""
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return int(payload["step"])


class TrainingSpend:
    """Joules and wall seconds spent on training steps so far, evaluation excluded, across resumes.

    The run's meter keeps integrating for the whole run (its record is the run's total, evaluation
    included); this counter reads the same readers only around training spans (:meth:`resume` /
    :meth:`pause`), so the budget and the marks charge a configuration for training alone. The
    counts of a resumed run start from what its checkpoint says was spent (:meth:`restore`).
    RAPL package zones that mirror one another are counted once, as in the meter's record.

    Args:
        readers: the energy readers of this rank's meter (empty: not metered, joules are NaN).
    """

    def __init__(self, readers: list[Any] | None = None) -> None:
        self.readers = list(readers or [])
        self.joules = self.low = self.high = 0.0
        self.seconds = 0.0
        self._since: tuple[float, dict[int, float]] | None = None
        self._last: dict[int, float] = {}
        self.method = " + ".join(sorted({r.method for r in self.readers})) if self.readers else "not metered"

    @property
    def estimated(self) -> bool:
        return any(r.estimated for r in self.readers)

    def _read(self) -> dict[int, float]:
        for r in self.readers:
            try:
                self._last[id(r)] = float(r.read())
            except Exception:  # a failing reader keeps its last value, as in the meter (noted there)
                self._last.setdefault(id(r), 0.0)
        return dict(self._last)

    def _span(self, now: dict[int, float]) -> tuple[float, float, float]:
        """(joules, low, high) since the last :meth:`resume`."""
        assert self._since is not None
        base = self._since[1]
        rapl = {r.device: r for r in self.readers if r.kind == "cpu" and r.method.startswith("measured:rapl")}
        deltas = {d: 1e6 * (now[id(r)] - base.get(id(r), 0.0)) for d, r in rapl.items()}
        skip = {id(rapl[m]) for m in mirrored_zones(deltas)} if len(rapl) > 1 else set()
        j = lo = hi = 0.0
        for r in self.readers:
            if id(r) in skip:
                continue
            d = now[id(r)] - base.get(id(r), 0.0)
            j += d
            lo += d * r.low_factor if r.estimated else d
            hi += d * r.high_factor if r.estimated else d
        return j, lo, hi

    def resume(self) -> None:
        """Start counting (before a training span)."""
        if self._since is None:
            self._sync()
            self._since = (time.perf_counter(), self._read())

    def pause(self) -> None:
        """Stop counting (before an evaluation or a checkpoint) and add the span to the totals."""
        if self._since is not None:
            self._sync()
            j, lo, hi = self._span(self._read()) if self.readers else (0.0, 0.0, 0.0)
            self.joules, self.low, self.high = self.joules + j, self.low + lo, self.high + hi
            self.seconds += time.perf_counter() - self._since[0]
            self._since = None

    def now(self) -> tuple[float, float]:
        """(joules, seconds) spent so far, the running span included; joules are NaN unmetered."""
        j, s = self.joules, self.seconds
        if self._since is not None:
            s += time.perf_counter() - self._since[0]
            if self.readers:
                j += self._span(self._read())[0]
        return (j if self.readers else math.nan), s

    @staticmethod
    def _sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()  # queued kernels belong to the span that launched them

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (call while paused)."""
        return {"energy_j": self.joules, "energy_j_low": self.low, "energy_j_high": self.high, "wall_s": self.seconds}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state` (a resumed run's budget counts what came before)."""

        def number(key: str, default: float) -> float:
            value = state.get(key)
            return default if value is None or not math.isfinite(float(value)) else float(value)

        self.joules = number("energy_j", 0.0)
        self.low = number("energy_j_low", self.joules)
        self.high = number("energy_j_high", self.joules)
        self.seconds = float(state.get("wall_s", 0.0))


def _energy_paths(energy: bool | str | os.PathLike, out: Path) -> tuple[Path, Path] | None:
    """(energy log, device table) of a run, or None when it is not metered."""
    if energy is False or energy is None:
        return None
    log = out / "energy_log.csv" if energy is True else Path(energy)
    return log, log.with_name(log.stem + "_devices.csv")


def train(
    config: TrainConfig,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool = True,
    deterministic: bool = False,
    *,
    energy: bool | str | os.PathLike = False,
    carbontracker: bool = False,
    cpu_tdp_w: float | None = None,
    should_stop: Callable[[int], bool] | None = None,
    dist_timeout_s: float = distributed.DEFAULT_TIMEOUT_S,
    stop_handler: distributed.StopHandler | None = None,
) -> TrainResult:
    """Train (or resume) a WaveFlow model; the function behind ``python -m waveflow train``.

    Under torchrun every rank calls this; it joins the process group itself (or uses the one the
    caller made) and leaves it at the end.

    Args:
        config: the run's options (``batch_size`` is the global batch).
        resume: continue from ``<out>/checkpoints/last.pt`` (error if absent); without it an
            existing run folder with checkpoints is refused rather than overwritten.
        on_step: called after every optimisation step with ``(step, loss)``, e.g. to mark
            energy-meter sections (on every rank).
        progress: show a tqdm bar with loss and samples/s (rank 0).
        deterministic: on CUDA, use deterministic kernels so that a resumed run repeats an
            uninterrupted one bit for bit (slower; CPU runs are deterministic anyway).
        energy: meter the run (False, the default: not metered). True appends the merged record
            to ``<out>/energy_log.csv`` and its device rows to ``<out>/energy_log_devices.csv``;
            a path names the log instead (the device table goes beside it).
        carbontracker: with ``energy``, also run Carbontracker, once per node (local rank 0).
        cpu_tdp_w: TDP for the CPU estimate, when the CPU has no readable RAPL counters.
        should_stop: called after every step with the step; True on any rank stops every rank
            after that step (the decision is agreed through the process group). This is the hook
            an energy budget uses: it must compare the *merged* total, ``ctx.total(joules of this
            rank)``, never one rank's share.
        dist_timeout_s: how long a collective may wait for the other ranks before the job fails.
        stop_handler: the CLI's SIGTERM handler, told the step and checkpoint for its last words.
    """
    ctx = distributed.setup(config.device, dist_timeout_s)
    if stop_handler is not None:
        stop_handler.ctx = ctx  # now with the job's store, where failure reports go
    try:
        return _train(
            ctx,
            config,
            resume,
            on_step,
            progress,
            deterministic,
            energy,
            carbontracker,
            cpu_tdp_w,
            should_stop,
            stop_handler,
        )
    finally:
        if sys.exc_info()[0] is None or not ctx.distributed:
            ctx.close()  # after a failure the group may be half dead: the process exit releases it


def _open_run(
    ctx: distributed.DistContext, config: TrainConfig, resume: bool, last: Path, val_set: LJSpeech | None
) -> tuple[Any, list[tuple[str, torch.Tensor]]]:
    """``(checkpoint payload or None, held-out crops)`` of the run about to start.

    Rank 0 reads and checks the checkpoint (its file system holds the run) and broadcasts the
    payload or the error, so every rank resumes from the same state or fails with the same message.
    """
    payload: Any = None
    crops: list[tuple[str, torch.Tensor]] = []
    if ctx.info.is_main:
        try:
            if config.eval_every:
                assert val_set is not None
                crops = heldout_crops(val_set, config.val_clips, config.val_samples, config.data)
            if resume:
                payload = _read_resume(config, last)
            elif last.exists():
                raise ValueError(
                    f"--out {config.out} already holds a run ({last}); pass --resume to continue it or choose "
                    "another --out"
                )
        except (ValueError, FileNotFoundError) as exc:
            payload = exc
    payload = ctx.broadcast(payload)
    if isinstance(payload, Exception):
        raise payload
    return payload, crops


def _write_start(
    ctx: distributed.DistContext,
    config: TrainConfig,
    resume: bool,
    step: int,
    model: WaveFlow,
    train_clips: int,
    validation_clips: int,
) -> None:
    """Rank 0: the run's options (``run.json``, atomic) and its start/resume line in the metrics log."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(out / "run.json", lambda p: Path(p).write_text(run_json))
    record = {
        "kind": "start" if not resume else "resume",
        "step": step,
        "time": time.time(),
        "host": socket.gethostname(),
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "params": model.num_parameters(),
        "train_clips": train_clips,
        "validation_clips": validation_clips,
    }
    append_metrics(out / "metrics.jsonl", record)


def _validate(
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


def _train(
    ctx: distributed.DistContext,
    config: TrainConfig,
    resume: bool,
    on_step: Callable[[int, float], None] | None,
    progress: bool,
    deterministic: bool,
    energy: bool | str | os.PathLike,
    carbontracker: bool,
    cpu_tdp_w: float | None,
    should_stop: Callable[[int], bool] | None,
    stop_handler: distributed.StopHandler | None,
) -> TrainResult:
    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    last = last_checkpoint(out)
    metrics_path = out / "metrics.jsonl"
    device, main, world = ctx.device, ctx.info.is_main, ctx.world_size
    if config.energy_budget_j is not None and energy is False:
        raise ValueError("--energy-budget: the run is not metered; expected a metered run (drop --no-energy)")
    rows = distributed.rank_rows(config.batch_size, ctx.rank, world)  # ValueError unless world | batch
    if deterministic:
        use_deterministic_kernels(device)
    if stop_handler is not None:
        stop_handler.checkpoint = last

    report = validate_dataset(config.data)  # bad data is reported here, before any compute
    common = dict(
        segment=config.segment,
        n_height=config.model.n_height,
        batch_size=config.batch_size,  # the global batch: every rank draws it and keeps its rows
        seed=config.seed,
        report=report,
    )
    train_set = LJSpeech(config.data, "train", **common)
    val_set = LJSpeech(config.data, "validation", **common) if main else None

    torch.manual_seed(config.seed)
    model = WaveFlow(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    payload, crops = _open_run(ctx, config, resume, last, val_set)
    step = _restore(payload, model, optimizer) if resume else 0
    before = int(payload.get("extra", {}).get("world_size", 1)) if resume else world
    if resume and before != world and main:
        warnings.warn(world_size_warning(before, world, config.batch_size), stacklevel=2)
    loss_fn = ctx.wrap(_NegLogLikelihood(model))

    if main:
        _write_start(ctx, config, resume, step, model, len(train_set), len(val_set) if val_set is not None else 0)

    def checkpoint(path: Path, spent: dict[str, Any]) -> None:
        extra = {"train": config.to_dict(), "world_size": world, "backend": ctx.backend, "spent": spent}
        save_checkpoint(path, model, optimizer, step, extra=extra)

    def spent_state() -> dict[str, Any]:
        """What every rank spent so far, for a checkpoint (a collective; pauses the count: a
        checkpoint's write is not training)."""
        spend.pause()
        joules, low, high, _ = spent_total()
        return {"energy_j": joules, "energy_j_low": low, "energy_j_high": high, "wall_s": spend.seconds}

    paths = _energy_paths(energy, out)
    meter = None
    if paths is not None:
        meter = distributed.RankMeter(
            ctx,
            f"train {config.name}",
            cpu_tdp_w=cpu_tdp_w,
            carbontracker_dir=out / "carbontracker" if carbontracker else None,
        )
        meter.start()
    spend = TrainingSpend(meter.meter.readers if meter is not None and meter.meter is not None else [])
    if resume:
        # The checkpoint holds the total of every rank: rank 0 carries it on, the others restart at 0 J.
        # Wall seconds run in parallel on every rank, so each rank carries them on.
        before = dict(payload.get("extra", {}).get("spent", {}))
        if not main:
            before.update(energy_j=0.0, energy_j_low=0.0, energy_j_high=0.0)
        spend.restore(before)
    metered = meter is not None

    def spent_total() -> tuple[float, float, float, float]:
        """(joules, low, high, seconds) of every rank so far (a collective: every rank calls it)."""
        j, secs = spend.now()
        if not metered:
            return math.nan, math.nan, math.nan, secs
        running = 0.0 if math.isnan(j) else j - spend.joules  # the open span's joules
        return (
            ctx.total(0.0 if math.isnan(j) else j),
            ctx.total(spend.low + running * (spend.low / spend.joules if spend.joules else 1.0)),
            ctx.total(spend.high + running * (spend.high / spend.joules if spend.joules else 1.0)),
            secs,
        )

    def mark() -> dict[str, Any]:
        """Held-out NLL and what training has spent so far (spend paused; RNG untouched)."""
        spend.pause()
        joules, low, high, secs = spent_total()
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
        if main:
            saved = rng_state()
            try:
                record["heldout_nll_bits"] = heldout_nll(model, crops)["bits_per_sample"]
            finally:
                set_rng_state(saved)
            append_metrics(metrics_path, record)
        return record

    model.train()
    history: list[dict[str, Any]] = []
    start_time, samples, loss_value, val = time.perf_counter(), 0, float("nan"), None
    stopped_by, marks = "steps", []
    budgets = config.energy_budget_j is not None or config.time_budget_s is not None
    bar = tqdm(total=config.steps, initial=step, disable=not (progress and main), desc=config.name, unit="step")
    try:
        while step < config.steps:
            spend.resume()
            batch = train_set.batch(step)  # batch of step s+1 is batch(s): a pure function of (seed, s)
            audio, mel = batch.audio[rows].to(device), batch.mel[rows].to(device)
            t0 = time.perf_counter()
            loss_value, grad_norm = _optimisation_step(
                loss_fn, model, optimizer, audio, mel, config.grad_clip, step + 1, last, ctx
            )
            step += 1
            if stop_handler is not None:
                stop_handler.step = step
            dt = time.perf_counter() - t0
            n = audio.numel() * world
            samples += n
            record = {
                "kind": "train",
                "step": step,
                "loss": loss_value,
                "grad_norm": grad_norm,
                "seconds": dt,
                "samples_per_s": n / dt,
                "wall": time.perf_counter() - start_time,
            }
            history.append(record)
            if main and step % config.log_every == 0:
                append_metrics(metrics_path, record)
            if on_step is not None:
                on_step(step, loss_value)
            bar.set_postfix(loss=f"{loss_value:.3f}", samples_s=f"{n / dt:,.0f}")
            bar.update(1)
            over = _over_budget(config, spent_total()) if budgets else ""
            asked = should_stop is not None and bool(should_stop(step))
            stop = (should_stop is not None or budgets) and ctx.agree(asked or bool(over))
            if stop:
                stopped_by = over or "should_stop"
                if main:
                    append_metrics(metrics_path, {"kind": "stop", "step": step, "reason": stopped_by})
            if config.eval_every and (step % config.eval_every == 0 or step == config.steps or stop):
                marks.append(mark())
            if (config.val_every and step % config.val_every == 0) or step == config.steps or stop:
                if main and config.val_clips:
                    assert val_set is not None
                    val = _validate(config, model, val_set, step, marks, metrics_path, start_time)
                spent = spent_state()
                if main:
                    checkpoint(last, spent)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                spent = spent_state()
                if main:
                    checkpoint(ckpt_dir / f"step_{step:07d}.pt", spent)
            if stop:
                break
        bar.close()
        spent = spent_state()
        if main and not last.exists():  # steps already reached at start (resume of a finished run)
            checkpoint(last, spent)
        merged = _finish_energy(ctx, meter, paths, step, metrics_path) if meter is not None else None
        meter = None
        if main:
            append_metrics(metrics_path, {"kind": "spent", "step": step, "method": spend.method, **spent})
    finally:
        if meter is not None:  # a failed run: stop the meter's threads and Carbontracker, log nothing
            meter.stop()
    return TrainResult(
        out,
        step,
        last,
        loss_value,
        val,
        time.perf_counter() - start_time,
        samples,
        history,
        world,
        merged,
        spent=spent,
        stopped_by=stopped_by,
        marks=marks,
    )


def _over_budget(config: TrainConfig, spent: tuple[float, float, float, float]) -> str:
    """Which budget the run has used up ("" when none): ``spent`` is :func:`spent_total`'s tuple."""
    joules, _, _, seconds = spent
    if config.energy_budget_j is not None and joules >= config.energy_budget_j:
        return f"energy budget {config.energy_budget_j:g} J reached ({joules:.4g} J of training)"
    if config.time_budget_s is not None and seconds >= config.time_budget_s:
        return f"time budget {config.time_budget_s:g} s reached ({seconds:.4g} s of training)"
    return ""


def _finish_energy(
    ctx: distributed.DistContext,
    meter: distributed.RankMeter,
    paths: tuple[Path, Path],
    step: int,
    metrics_path: Path,
) -> MergedEnergy | None:
    """Stop every rank's meter, gather the parts on rank 0 through the process group, merge and log."""
    ctx.barrier()  # every rank's window closes after the last step of all ranks
    part = meter.stop()
    parts = ctx.gather(part)
    if parts is None:
        return None
    merged = merge_records(parts, ctx.world_size)
    log, devices = paths
    append_record(merged.record, log)
    append_devices(merged, devices)
    append_metrics(
        metrics_path,
        {
            "kind": "energy",
            "step": step,
            "world_size": ctx.world_size,
            "nodes": merged.nodes,
            "energy_j": merged.energy_j,
            "method": merged.record.methods_label(),
            "devices": sum(d.counted for d in merged.devices),
            "missing_ranks": merged.missing_ranks,
            "log": str(log),
        },
    )
    return merged


# ----------------------------------------------------------------------------------------------
# CLI: python -m waveflow train
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``train``."""
    d = TrainConfig()
    parser.add_argument("--config", default="WF2", help="paper configuration WF1..WF5 to start from (WF2)")
    parser.add_argument("--res-channels", type=int, help="override r, the residual channels")
    parser.add_argument("--n-height", type=int, help="override h, the squeezed height (8, 16, 32, 64, 128)")
    parser.add_argument("--n-flows", type=int, help="override the number of flows (8)")
    parser.add_argument("--n-layers", type=int, help="override the layers per flow (8; h=8/16 only)")
    parser.add_argument("--data", default=d.data, help="LJSpeech-format folder (default: bundled ljspeech-mini)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"total steps ({d.steps})")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"global clips per step ({d.batch_size}); under torchrun each of the W ranks takes batch/W of them, "
        "so W must divide it. The learning rate is never rescaled with W: the same global batch gives the same "
        "averaged gradient at any W; change --lr yourself if you change the global batch",
    )
    parser.add_argument("--segment", type=int, default=d.segment, help=f"crop length in samples ({d.segment})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    parser.add_argument(
        "--grad-clip", type=float, default=d.grad_clip, help=f"max gradient norm, 0 = off ({d.grad_clip})"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    parser.add_argument("--out", default="", help="run folder (default build/runs/<config>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument(
        "--device",
        default=d.device,
        help="cpu, cuda, cuda:N or auto (auto); under torchrun cuda/auto give each rank cuda:<local rank> and "
        "NCCL, cpu gives gloo",
    )
    parser.add_argument("--val-every", type=int, default=d.val_every, help=f"steps between validations ({d.val_every})")
    parser.add_argument("--val-clips", type=int, default=d.val_clips, help=f"validation clips ({d.val_clips})")
    parser.add_argument(
        "--val-samples",
        type=int,
        default=d.val_samples,
        help=f"samples per validation clip, 0 = whole clip ({d.val_samples})",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between kept periodic checkpoints, 0 = none (0)",
    )
    parser.add_argument("--log-every", type=int, default=d.log_every, help=f"steps between log lines ({d.log_every})")
    parser.add_argument(
        "--energy-budget",
        metavar="J",
        help="stop once training (evaluation excluded, every rank, counted across resumes) has used this many joules",
    )
    parser.add_argument(
        "--time-budget",
        metavar="S",
        help="stop once training (evaluation excluded, counted across resumes) has run this many wall seconds",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        help="steps between quality marks: held-out NLL (bits/sample) on fixed crops of --val-samples samples of "
        "--val-clips validation clips, with the training energy so far; 0 = none (0)",
    )
    parser.add_argument(
        "--energy-log",
        default="",
        help="CSV the run's merged energy record is appended to (default <out>/energy_log.csv; the per-device "
        "rows go to <log>_devices.csv)",
    )
    parser.add_argument("--no-energy", action="store_true", help="do not meter the run's energy")
    parser.add_argument(
        "--carbontracker",
        action="store_true",
        help="also run Carbontracker, once per node (it meters only its node's devices)",
    )
    parser.add_argument("--cpu-tdp", type=float, help="CPU TDP in W for the CPU estimate (default: table lookup)")
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=distributed.DEFAULT_TIMEOUT_S,
        help="seconds a rank waits for the others before the job fails instead of hanging; rank 0's validation "
        f"and checkpoints must fit in it ({distributed.DEFAULT_TIMEOUT_S:g})",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the run's :class:`TrainConfig` from CLI arguments."""
    model = get_config(args.config)
    overrides = {
        k: v
        for k, v in {
            "res_channels": args.res_channels,
            "n_height": args.n_height,
            "n_flows": args.n_flows,
            "n_layers": args.n_layers,
        }.items()
        if v is not None
    }
    if "n_height" in overrides and model.permutation == "bipartite" and overrides["n_height"] % 2:
        overrides["permutation"] = "reverse"
    model = model.replace(**overrides)
    name = args.config.upper() + "".join(f"-{k[0]}{v}" for k, v in sorted(overrides.items()) if k != "permutation")
    return TrainConfig(
        model=model,
        data=args.data,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        segment=args.segment,
        lr=args.lr,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        val_every=args.val_every,
        val_clips=args.val_clips,
        val_samples=args.val_samples,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        name=name,
        energy_budget_j=None if args.energy_budget is None else positive_number(args.energy_budget, "--energy-budget"),
        time_budget_s=None if args.time_budget is None else positive_number(args.time_budget, "--time-budget"),
        eval_every=0 if args.eval_every is None else _eval_every(args.eval_every),
    )


def _eval_every(value: int) -> int:
    """``--eval-every``: 0 is refused on the command line (leave the option out for no marks)."""
    if value is None or value < 1:
        raise ValueError(f"--eval-every: expected a positive number of steps, got {value!r} (omit it for no marks)")
    return value


def run(args: argparse.Namespace) -> int:
    """Train from the command line; exit 3 when training diverges, 1 when a rank of the job failed.

    The first line names the world size and backend. Under torchrun only rank 0 prints: errors
    that every rank meets alike (bad options, a refused resume, divergence) once, and the failure
    of any rank as one line naming the rank and the reason (:func:`distributed.failure_line`).
    """
    info = distributed.rank_info()
    try:
        config = config_from_args(args)
        distributed.local_batch_size(config.batch_size, info.world_size)
    except (ValueError, FileNotFoundError):
        if info.is_main:
            raise  # the CLI prints it as one line
        return 2
    device = distributed.rank_device(config.device, info)  # a rank's own problem: every rank says it
    backend = distributed.backend_for(device) if info.launched else "none (single process)"
    if info.is_main:
        print(f"DDP: world size {info.world_size}, backend {backend}", flush=True)
    energy: bool | str = False if args.no_energy else (args.energy_log or True)
    handler = distributed.StopHandler(distributed.DistContext(info, device)) if info.launched else None
    try:
        if handler is not None:
            handler.install()
        result = train(
            config,
            resume=args.resume,
            progress=info.is_main,
            energy=energy,
            carbontracker=args.carbontracker,
            cpu_tdp_w=args.cpu_tdp,
            dist_timeout_s=args.dist_timeout,
            stop_handler=handler,
        )
    except TrainingDiverged as exc:  # decided on the averaged loss: the same on every rank
        if info.is_main:
            print(f"python -m waveflow train: {exc}")
        return 3
    except (ValueError, FileNotFoundError):  # options and resume checks: rank 0 decides and broadcasts
        if info.is_main:
            raise
        return 2
    except (Exception, distributed.JobStopped) as exc:
        if handler is None:
            raise
        return _report_failure(handler, exc)
    finally:
        if handler is not None:
            handler.uninstall()
    if not info.is_main:
        return 0
    val = "n/a" if result.final_val_nll is None else f"{result.final_val_nll:.4f} nats/sample"
    print(
        f"step {result.step}: train loss {result.final_train_loss:.4f}, validation NLL {val}; "
        f"checkpoint {result.last_checkpoint}"
    )
    if result.stopped_by not in ("steps", "should_stop"):
        print(f"stopped at step {result.step}: {result.stopped_by}")
    if result.marks:
        m = result.marks[-1]
        print(
            f"{len(result.marks)} quality mark(s); last: {m.get('heldout_nll_bits', math.nan):.4f} bits/sample "
            f"held-out after {m['energy_j']:.4g} J ({m['energy_method']}) and {m['wall_s']:.1f} s of training"
        )
    if result.energy is not None:
        e = result.energy
        missing = f", missing ranks {e.missing_ranks}" if e.missing_ranks else ""
        print(
            f"energy: {e.energy_j:.1f} J over {sum(d.counted for d in e.devices)} device(s) of {e.world_size} rank(s) "
            f"on {e.nodes} node(s) ({e.record.methods_label()}){missing}"
        )
    return 0


def _report_failure(handler: distributed.StopHandler, exc: BaseException) -> int:
    """Leave this rank's reason for rank 0, which prints the job's one-line reason; exit code 1.

    A rank other than 0 prints its own error too (one line, prefixed with its rank) when it is the
    cause rather than a casualty, so a node's own log says what went wrong there.
    """
    handler.quiet()  # torchrun's SIGTERM must not cut the report short
    ctx = handler.ctx
    cause = not distributed.is_secondary(exc)
    if cause:
        ctx.report_failure(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    if ctx.rank == 0:
        line = distributed.failure_line(ctx, exc, handler.step, handler.checkpoint)
        if handler.printed.acquire(blocking=False):
            print(f"python -m waveflow train: {line}", file=sys.stderr, flush=True)
    elif cause:
        print(f"python -m waveflow train: rank {ctx.rank}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return 1
