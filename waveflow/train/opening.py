"""Opening a training run: its options checked, its data, its model, the checkpoint it resumes from,
its start record, and the meter that counts what it spends.

The order is part of the run's contract: the seed is set before the model is built, and a resumed
run's checkpoint restores every RNG after that, so a resumed run repeats an uninterrupted one. Rank 0
reads the run folder and broadcasts what it found (or the error), so every rank resumes from the
same state or fails with the same message.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..data import LJSpeech, validate_dataset
from ..devices import use_deterministic_kernels
from ..files import atomic_write
from ..model import WaveFlow, WaveFlowConfig, read_checkpoint, set_rng_state
from . import distributed
from .evaluation import heldout_crops
from .metrics import append_metrics, last_checkpoint
from .options import RESUME_MUST_MATCH, TrainConfig
from .run_state import RunState
from .spend import TrainingSpend, energy_paths


def open_run(
    ctx: distributed.DistContext,
    config: TrainConfig,
    resume: bool,
    deterministic: bool,
    energy: bool | str | os.PathLike,
    stop_handler: distributed.StopHandler | None,
) -> tuple[RunState, Any]:
    """``(the run's state at its first step, the checkpoint payload or None)``.

    Options that cannot work are refused before any compute: an energy budget without a meter, a
    global batch the world size does not divide, bad data. The seed is set right before the model
    is built, so a new run starts from the same weights at any world size; a resume then loads the
    checkpoint's weights, optimiser state and RNG states.
    """
    out = Path(config.out)
    last = last_checkpoint(out)
    main, world = ctx.info.is_main, ctx.world_size
    if config.energy_budget_j is not None and energy is False:
        raise ValueError("--energy-budget: the run is not metered; expected a metered run (drop --no-energy)")
    rows = distributed.rank_rows(config.batch_size, ctx.rank, world)  # ValueError unless world | batch
    if deterministic:
        use_deterministic_kernels(ctx.device)
    if stop_handler is not None:
        stop_handler.checkpoint = last
    train_set, val_set = _datasets(config, main)

    torch.manual_seed(config.seed)
    model = WaveFlow(config.model).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    payload, crops = _read_run_folder(ctx, config, resume, last, val_set)
    step = _restore(payload, model, optimizer) if resume else 0
    before = int(payload.get("extra", {}).get("world_size", 1)) if resume else world
    if resume and before != world and main:
        # stacklevel 3: the warning names train(), the function the caller called
        warnings.warn(world_size_warning(before, world, config.batch_size), stacklevel=3)
    run = RunState(ctx, config, model, optimizer, train_set, val_set, crops, rows, last, step)
    return run, payload


def _datasets(config: TrainConfig, main: bool) -> tuple[LJSpeech, LJSpeech | None]:
    """The training split (every rank) and the validation split (rank 0), after checking the data:
    bad data is reported here, before any compute."""
    report = validate_dataset(config.data)
    common = dict(
        segment=config.segment,
        n_height=config.model.n_height,
        batch_size=config.batch_size,  # the global batch: every rank draws it and keeps its rows
        seed=config.seed,
        report=report,
        validation_fraction=config.validation_fraction,
    )
    train_set = LJSpeech(config.data, "train", **common)
    val_set = LJSpeech(config.data, "validation", **common) if main else None
    return train_set, val_set


def _read_run_folder(
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


def write_start(run: RunState, resume: bool) -> None:
    """Rank 0: the run's options (``run.json``, atomic) and its start/resume line in the metrics log."""
    ctx, config = run.ctx, run.config
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    run_json = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(out / "run.json", lambda p: Path(p).write_text(run_json))
    record = {
        "kind": "start" if not resume else "resume",
        "step": run.step,
        "time": time.time(),
        "host": socket.gethostname(),
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "params": run.model.num_parameters(),
        "train_clips": len(run.train_set),
        "validation_clips": len(run.val_set) if run.val_set is not None else 0,
    }
    append_metrics(out / "metrics.jsonl", record)


def start_metering(
    run: RunState,
    energy: bool | str | os.PathLike,
    carbontracker: bool,
    cpu_tdp_w: float | None,
    resume: bool,
    payload: Any,
) -> None:
    """Start this rank's meter (when the run is metered) and the training spend read from it.

    A resumed run's spend carries on from what its checkpoint says every rank spent, so its budget
    counts what came before the interruption.
    """
    out = run.out
    run.paths = energy_paths(energy, out)
    meter = None
    if run.paths is not None:
        meter = distributed.RankMeter(
            run.ctx,
            f"train {run.config.name}",
            cpu_tdp_w=cpu_tdp_w,
            carbontracker_dir=out / "carbontracker" if carbontracker else None,
        )
        meter.start()
    run.meter = meter
    run.spend = TrainingSpend(meter.meter.readers if meter is not None and meter.meter is not None else [])
    if resume:
        # The checkpoint holds the total of every rank: rank 0 carries it on, the others restart at 0 J.
        # Wall seconds run in parallel on every rank, so each rank carries them on.
        before = dict(payload.get("extra", {}).get("spent", {}))
        if not run.main:
            before.update(energy_j=0.0, energy_j_low=0.0, energy_j_high=0.0)
        run.spend.restore(before)
    run.metered = meter is not None
