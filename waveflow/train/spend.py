"""What training has spent: joules and seconds around the training steps, the budgets they are
held to, and the run's merged energy record at the end."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..energy import append_record, merge_records
from ..energy.merge import MergedEnergy, append_devices
from ..energy.rapl import mirrored_zones
from . import distributed
from .metrics import append_metrics
from .options import TrainConfig


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


def energy_paths(energy: bool | str | os.PathLike, out: Path) -> tuple[Path, Path] | None:
    """(energy log, device table) of a run, or None when it is not metered."""
    if energy is False or energy is None:
        return None
    log = out / "energy_log.csv" if energy is True else Path(energy)
    return log, log.with_name(log.stem + "_devices.csv")


def over_budget(config: TrainConfig, spent: tuple[float, float, float, float]) -> str:
    """Which budget the run has used up ("" when none): ``spent`` is :meth:`RunState.spent_total`'s tuple."""
    joules, _, _, seconds = spent
    if config.energy_budget_j is not None and joules >= config.energy_budget_j:
        return f"energy budget {config.energy_budget_j:g} J reached ({joules:.4g} J of training)"
    if config.time_budget_s is not None and seconds >= config.time_budget_s:
        return f"time budget {config.time_budget_s:g} s reached ({seconds:.4g} s of training)"
    return ""


def finish_energy(
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
