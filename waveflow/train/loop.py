"""The training loop behind :func:`train`: the run opened (:mod:`~waveflow.train.opening`), then
step after step, each with its divergence checks, its stop decision, its quality mark and its
checkpoints, until the last step or a stop, and the run closed with its energy record (the run's
contract is described in :mod:`waveflow.train`)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..energy.merge import MergedEnergy
from ..model import WaveFlow
from . import distributed
from .evaluation import validate
from .metrics import append_metrics
from .opening import open_run, start_metering, write_start
from .options import TrainConfig, TrainingDiverged, TrainResult
from .run_state import RunState
from .spend import finish_energy, over_budget


def _check_finite(loss: torch.Tensor, grad_norm: torch.Tensor | None, step: int, ckpt: Path) -> None:
    """Raise :class:`TrainingDiverged`, naming the step and the checkpoint left intact, when the loss or
    the gradient norm is not finite: a diverged run stops before its weights turn to NaN."""
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
    """One rank's run, in the order that keeps it exact: open (or resume) the run, wrap the loss for
    DDP, write the start record, start the meter, then train (:func:`_train_steps`)."""
    run, payload = open_run(ctx, config, resume, deterministic, energy, stop_handler)
    loss_fn = ctx.wrap(_NegLogLikelihood(run.model))
    if run.main:
        write_start(run, resume)
    start_metering(run, energy, carbontracker, cpu_tdp_w, resume, payload)
    return _train_steps(run, loss_fn, on_step, progress, should_stop, stop_handler)


@dataclass
class _Tally:
    """What the loop has seen so far, for the run's :class:`TrainResult`."""

    start_time: float
    history: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    loss_value: float = math.nan
    val: float | None = None
    stopped_by: str = "steps"
    marks: list[dict[str, Any]] = field(default_factory=list)


def _train_steps(
    run: RunState,
    loss_fn: torch.nn.Module,
    on_step: Callable[[int, float], None] | None,
    progress: bool,
    should_stop: Callable[[int], bool] | None,
    stop_handler: distributed.StopHandler | None,
) -> TrainResult:
    """Step until ``steps`` or a stop every rank agreed on, then close the run.

    Each step is followed by the stop decision, the quality mark and the checkpoints, in that
    order: a stopped run still marks and saves the step it stopped at. A failed run stops its
    meter (threads and Carbontracker) and logs no energy.
    """
    config = run.config
    run.model.train()
    tally = _Tally(start_time=time.perf_counter())
    budgets = config.energy_budget_j is not None or config.time_budget_s is not None
    bar = tqdm(total=config.steps, initial=run.step, disable=not (progress and run.main), desc=config.name, unit="step")
    try:
        while run.step < config.steps:
            _one_step(run, loss_fn, tally, bar, on_step, stop_handler)
            stop = _agree_to_stop(run, tally, should_stop, budgets)
            _quality_mark(run, tally, stop)
            _validate_and_save(run, tally, stop)
            if stop:
                break
        bar.close()
        spent, merged = _finish(run)
    finally:
        if run.meter is not None:  # a failed run: stop the meter's threads and Carbontracker, log nothing
            run.meter.stop()
    return TrainResult(
        run.out,
        run.step,
        run.last,
        tally.loss_value,
        tally.val,
        time.perf_counter() - tally.start_time,
        tally.samples,
        tally.history,
        run.ctx.world_size,
        merged,
        spent=spent,
        stopped_by=tally.stopped_by,
        marks=tally.marks,
    )


def _one_step(
    run: RunState,
    loss_fn: torch.nn.Module,
    tally: _Tally,
    bar: Any,
    on_step: Callable[[int, float], None] | None,
    stop_handler: distributed.StopHandler | None,
) -> None:
    """One optimisation step on this rank's rows of the global batch, counted as training.

    The batch of step ``s+1`` is ``batch(s)``, a pure function of ``(seed, s)``: what makes a
    resumed run repeat an uninterrupted one. The step's record goes to the history, every
    ``log_every`` steps to the metrics log (rank 0), and to ``on_step``.
    """
    config, ctx = run.config, run.ctx
    run.spend.resume()
    batch = run.train_set.batch(run.step)
    audio, mel = batch.audio[run.rows].to(ctx.device), batch.mel[run.rows].to(ctx.device)
    t0 = time.perf_counter()
    tally.loss_value, grad_norm = _optimisation_step(
        loss_fn, run.model, run.optimizer, audio, mel, config.grad_clip, run.step + 1, run.last, ctx
    )
    run.step += 1
    step, loss_value = run.step, tally.loss_value
    if stop_handler is not None:
        stop_handler.step = step
    dt = time.perf_counter() - t0
    n = audio.numel() * ctx.world_size
    tally.samples += n
    record = {
        "kind": "train",
        "step": step,
        "loss": loss_value,
        "grad_norm": grad_norm,
        "seconds": dt,
        "samples_per_s": n / dt,
        "wall": time.perf_counter() - tally.start_time,
    }
    tally.history.append(record)
    if run.main and step % config.log_every == 0:
        append_metrics(run.metrics_path, record)
    if on_step is not None:
        on_step(step, loss_value)
    bar.set_postfix(loss=f"{loss_value:.3f}", samples_s=f"{n / dt:,.0f}")
    bar.update(1)


def _agree_to_stop(run: RunState, tally: _Tally, should_stop: Callable[[int], bool] | None, budgets: bool) -> bool:
    """Whether every rank stops after this step: a budget used up (on the merged total over ranks)
    or ``should_stop`` on any rank, agreed through the process group so no rank waits for the
    others forever. The reason goes to the metrics log."""
    over = over_budget(run.config, run.spent_total()) if budgets else ""
    asked = should_stop is not None and bool(should_stop(run.step))
    stop = (should_stop is not None or budgets) and run.ctx.agree(asked or bool(over))
    if stop:
        tally.stopped_by = over or "should_stop"
        if run.main:
            append_metrics(run.metrics_path, {"kind": "stop", "step": run.step, "reason": tally.stopped_by})
    return stop


def _quality_mark(run: RunState, tally: _Tally, stop: bool) -> None:
    """Every ``eval_every`` steps, at the last step and at a stop: held-out NLL beside what training
    has spent so far (:meth:`RunState.mark`), so a run's quality can be read against its energy."""
    config, step = run.config, run.step
    if config.eval_every and (step % config.eval_every == 0 or step == config.steps or stop):
        tally.marks.append(run.mark())


def _validate_and_save(run: RunState, tally: _Tally, stop: bool) -> None:
    """Validation and ``last.pt`` every ``val_every`` steps, at the last step and at a stop, so an
    interrupted run resumes from its latest state; a kept ``step_NNNNNNN.pt`` every
    ``checkpoint_every`` steps. The spend is paused first (on every rank: the total is a collective),
    so neither counts as training."""
    config, step = run.config, run.step
    if (config.val_every and step % config.val_every == 0) or step == config.steps or stop:
        if run.main and config.val_clips:
            assert run.val_set is not None
            tally.val = validate(config, run.model, run.val_set, step, tally.marks, run.metrics_path, tally.start_time)
        spent = run.spent_state()
        if run.main:
            run.checkpoint(run.last, spent)
    if config.checkpoint_every and step % config.checkpoint_every == 0:
        spent = run.spent_state()
        if run.main:
            run.checkpoint(run.ckpt_dir / f"step_{step:07d}.pt", spent)


def _finish(run: RunState) -> tuple[dict[str, Any], MergedEnergy | None]:
    """Close a run that got through its steps: ``(what it spent, the merged energy record)``.

    A run whose steps were already done when it started (the resume of a finished run) gets its
    ``last.pt`` here; every rank's meter stops and rank 0 merges and logs the energy.
    """
    spent = run.spent_state()
    if run.main and not run.last.exists():  # steps already reached at start (resume of a finished run)
        run.checkpoint(run.last, spent)
    meter, paths = run.meter, run.paths
    merged = finish_energy(run.ctx, meter, paths, run.step, run.metrics_path) if meter is not None else None
    run.meter = None
    if run.main:
        append_metrics(run.metrics_path, {"kind": "spent", "step": run.step, "method": run.spend.method, **spent})
    return spent, merged
