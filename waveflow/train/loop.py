"""The training loop behind :func:`train`: opening or resuming a run, the optimisation step with
its divergence checks, checkpoints, marks and budgets (the run's contract is described in
:mod:`waveflow.train`)."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import LJSpeech, validate_dataset
from ..devices import use_deterministic_kernels
from ..files import atomic_write
from ..measures.quality import heldout_nll
from ..model import WaveFlow, WaveFlowConfig, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from . import distributed
from .evaluation import heldout_crops, validate
from .metrics import append_metrics, last_checkpoint
from .options import RESUME_MUST_MATCH, TrainConfig, TrainingDiverged, TrainResult
from .spend import TrainingSpend, energy_paths, finish_energy, over_budget


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

    paths = energy_paths(energy, out)
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
            over = over_budget(config, spent_total()) if budgets else ""
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
                    val = validate(config, model, val_set, step, marks, metrics_path, start_time)
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
        merged = finish_energy(ctx, meter, paths, step, metrics_path) if meter is not None else None
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
