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
from .files import atomic_write
from .model import (
    WaveFlow,
    WaveFlowConfig,
    from_dict_checked,
    get_config,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from .paths import LJSPEECH_MINI, RUNS
from .quality import heldout_nll

LN2 = math.log(2.0)
PAPER_BATCH = 8  # clips per step in WaveFlow and Douwes et al.
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

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = WaveFlowConfig.from_dict(self.model)
        for name in ("steps", "batch_size", "segment"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {value!r}")
        for name in ("val_every", "val_clips", "val_samples", "checkpoint_every"):
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
    # Rank 0 reads and checks the checkpoint (its file system holds the run) and broadcasts the
    # payload or the error, so every rank resumes from the same state or fails with the same message.
    payload: Any = None
    if main:
        try:
            if resume:
                payload = _read_resume(config, last)
            elif last.exists():
                raise ValueError(
                    f"--out {out} already holds a run ({last}); pass --resume to continue it or choose another --out"
                )
        except (ValueError, FileNotFoundError) as exc:
            payload = exc
    payload = ctx.broadcast(payload)
    if isinstance(payload, Exception):
        raise payload
    step = _restore(payload, model, optimizer) if resume else 0
    before = int(payload.get("extra", {}).get("world_size", 1)) if resume else world
    if resume and before != world and main:
        warnings.warn(world_size_warning(before, world, config.batch_size), stacklevel=2)
    loss_fn = ctx.wrap(_NegLogLikelihood(model))

    if main:
        out.mkdir(parents=True, exist_ok=True)
        run_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write(out / "run.json", lambda p: Path(p).write_text(run_json))
        append_metrics(
            metrics_path,
            {
                "kind": "start" if not resume else "resume",
                "step": step,
                "time": time.time(),
                "host": socket.gethostname(),
                "device": str(device),
                "world_size": world,
                "backend": ctx.backend,
                "params": model.num_parameters(),
                "train_clips": len(train_set),
                "validation_clips": len(val_set) if val_set is not None else 0,
            },
        )

    def checkpoint(path: Path) -> None:
        extra = {"train": config.to_dict(), "world_size": world, "backend": ctx.backend}
        save_checkpoint(path, model, optimizer, step, extra=extra)

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

    model.train()
    history: list[dict[str, Any]] = []
    start_time, samples, loss_value, val = time.perf_counter(), 0, float("nan"), None
    bar = tqdm(total=config.steps, initial=step, disable=not (progress and main), desc=config.name, unit="step")
    try:
        while step < config.steps:
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
            stop = should_stop is not None and ctx.agree(bool(should_stop(step)))
            if (config.val_every and step % config.val_every == 0) or step == config.steps or stop:
                if main and config.val_clips:
                    val = validation_nll(model, val_set, config.val_clips, config.val_samples)
                    append_metrics(
                        metrics_path,
                        {
                            "kind": "validation",
                            "step": step,
                            "val_nll": val,
                            "val_bits": val / LN2,
                            "wall": time.perf_counter() - start_time,
                        },
                    )
                if main:
                    checkpoint(last)
            if main and config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint(ckpt_dir / f"step_{step:07d}.pt")
            if stop:
                break
        bar.close()
        if main and not last.exists():  # steps already reached at start (resume of a finished run)
            checkpoint(last)
        merged = _finish_energy(ctx, meter, paths, step, metrics_path) if meter is not None else None
        meter = None
    finally:
        if meter is not None:  # a failed run: stop the meter's threads and Carbontracker, log nothing
            meter.stop()
    return TrainResult(
        out, step, last, loss_value, val, time.perf_counter() - start_time, samples, history, world, merged
    )


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
    )


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
