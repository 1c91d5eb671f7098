"""Energy to quality: held-out NLL against the joules spent training, every configuration under one budget.

The paper compares configurations at the end of a 3 M-step schedule nobody can repeat on a laptop.
What any machine can measure honestly is how fast each configuration turns training energy into
quality. :func:`run_budget` trains every configuration from scratch under the same energy budget
(``python -m waveflow train``'s ``energy_budget_j``) with quality marks every ``eval_every`` steps,
and collects one row per mark (:data:`COLUMNS`). The energy of a mark is training energy only
(evaluations and checkpoint writes are left out, :class:`waveflow.train.TrainingSpend`), with how
it was obtained and, for an estimate, its low/high bound.

Equal warmth: configurations are **interleaved**, not run one after another. Every configuration
first trains ``warmup_steps`` unmetered steps (a throw-away run that heats caches, the CPU clock and
the allocator), then the metered runs advance round-robin, one mark interval of one configuration at
a time, by resuming each run from its checkpoint. Each configuration's joules are therefore spread
over the whole run rather than bunched at its start or end, so a machine that warms up or
throttles as the run goes on affects all of them alike.

The derived tables answer the paper's question at every budget: the energy each configuration needed
to reach a few held-out NLL targets (:func:`energy_to_targets`), the best configuration at a few
budgets (:func:`best_at_budgets`), and where two curves cross (:func:`crossings`), in words
(:func:`findings`).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..energy.readers import cpu_brand
from ..model import WaveFlowConfig, get_config
from ..paths import LJSPEECH_MINI, RUNS
from ..train import TrainConfig, read_metrics, train

#: One row per quality mark, in this order (``build/results/energy_to_quality.csv``).
COLUMNS = [
    "config",
    "step",
    "examples",
    "energy_j",
    "energy_j_low",
    "energy_j_high",
    "energy_method",
    "wall_s",
    "heldout_nll_bits",
]
NOT_REACHED = "not reached within the budget"


@dataclass
class BudgetRun:
    """Options shared by every configuration of an energy-to-quality run.

    Args:
        energy_budget_j: training joules each configuration may spend (the same for all).
        eval_every: steps between quality marks.
        max_steps: a cap on the steps of one configuration, in case the budget is never reached.
        batch_size, segment, lr, seed: training options (the same for all configurations).
        val_clips, val_samples: the fixed held-out crops of the marks (clips, samples per crop).
        warmup_steps: unmetered steps per configuration before the metered runs (0: none).
        data: LJSpeech-format folder; out: folder holding one run folder per configuration.
        device: ``cpu``, ``cuda``, ``auto``; cpu_tdp_w: TDP for the CPU estimate (None: table).
        model_overrides: WaveFlow fields changed in every configuration, e.g. ``{"n_flows": 2,
            "n_layers": 2}`` for a CPU-sized depth. Only depth should change: h and r are what tell
            the paper's configurations apart. Empty: the paper's configurations as they are.
    """

    energy_budget_j: float
    eval_every: int = 1
    max_steps: int = 1000
    batch_size: int = 1
    segment: int = 2048
    lr: float = 2e-4
    seed: int = 0
    val_clips: int = 1
    val_samples: int = 4096
    warmup_steps: int = 1
    data: str = str(LJSPEECH_MINI)
    out: str = str(RUNS / "06")
    device: str = "auto"
    cpu_tdp_w: float | None = None
    model_overrides: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.energy_budget_j, (int, float)) and math.isfinite(self.energy_budget_j)) or (
            self.energy_budget_j <= 0
        ):
            raise ValueError(f"ENERGY_BUDGET_J: expected a positive number of joules, got {self.energy_budget_j!r}")
        for name in ("eval_every", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.upper()}: expected a positive integer, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"WARMUP_STEPS: expected an integer >= 0, got {self.warmup_steps!r}")

    def model(self, name: str) -> WaveFlowConfig:
        """The configuration ``name`` with :attr:`model_overrides` applied (a bad field fails by name)."""
        overrides = dict(self.model_overrides or {})
        unknown = sorted(set(overrides) - {f.name for f in fields(WaveFlowConfig)})
        if unknown:
            raise ValueError(f"MODEL_OVERRIDES: unknown WaveFlow fields {unknown}; expected e.g. n_flows, n_layers")
        return get_config(name).replace(**overrides)

    def train_config(self, name: str, steps: int, out: Path, **changes: Any) -> TrainConfig:
        options: dict[str, Any] = dict(
            model=self.model(name),
            data=self.data,
            out=str(out),
            steps=steps,
            batch_size=self.batch_size,
            segment=self.segment,
            lr=self.lr,
            seed=self.seed,
            device=self.device,
            val_every=0,
            val_clips=self.val_clips,
            val_samples=self.val_samples,
            name=name,
            energy_budget_j=self.energy_budget_j,
            eval_every=self.eval_every,
        )
        options.update(changes)
        return TrainConfig(**options)


def machine_label() -> str:
    """The machine a figure came from: host, CPU brand and cores, GPUs (for the figure CSVs)."""
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no GPU"
    return f"{socket.gethostname()}: {cpu_brand()} ({os.cpu_count()} logical cores), {gpus}"


def run_budget(
    configs: Sequence[str],
    options: BudgetRun,
    *,
    energy_log: str | Path | bool = True,
    on_chunk: Callable[[str, int], None] | None = None,
) -> pd.DataFrame:
    """Train every configuration from scratch under ``options.energy_budget_j``, interleaved.

    Each configuration's run folder (``<out>/<config>``) is wiped first: a budget curve is only
    meaningful from step 0. Returns the marks as a :data:`COLUMNS` table, in configuration order.

    Args:
        configs: paper configuration names (WF1..WF5).
        options: the shared options.
        energy_log: where each chunk's metered record goes (True: the run folder's log).
        on_chunk: called with ``(config, step reached)`` after each chunk (progress).
    """
    if not configs:
        raise ValueError("CONFIGS: expected at least one configuration")
    root = Path(options.out)
    outs = {name: root / name for name in configs}
    for name in configs:
        options.model(name)  # an unknown name or override fails before any compute
        shutil.rmtree(outs[name], ignore_errors=True)
    if options.warmup_steps:
        for name in configs:
            warm = root / f"warmup-{name}"
            shutil.rmtree(warm, ignore_errors=True)
            cfg = options.train_config(name, options.warmup_steps, warm, energy_budget_j=None, eval_every=0)
            train(cfg, progress=False)
            shutil.rmtree(warm, ignore_errors=True)
    step = dict.fromkeys(configs, 0)
    active = list(configs)
    while active:  # round-robin: one mark interval of each configuration in turn
        for name in list(active):
            target = min(step[name] + options.eval_every, options.max_steps)
            cfg = options.train_config(name, target, outs[name])
            result = train(
                cfg,
                resume=step[name] > 0,
                progress=False,
                energy=energy_log,
                cpu_tdp_w=options.cpu_tdp_w,
            )
            step[name] = result.step
            if on_chunk is not None:
                on_chunk(name, result.step)
            if result.stopped_by.startswith("energy budget") or result.step >= options.max_steps:
                active.remove(name)
    return collect_marks(outs)


def collect_marks(runs: dict[str, Path]) -> pd.DataFrame:
    """The marks of each run folder's metrics log as a :data:`COLUMNS` table."""
    rows = []
    for name, out in runs.items():
        for m in read_metrics(out / "metrics.jsonl", kind="mark"):
            rows.append({"config": name, **{k: m.get(k) for k in COLUMNS[1:]}})
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("energy_j", "energy_j_low", "energy_j_high", "wall_s", "heldout_nll_bits"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def check_marks(table: pd.DataFrame) -> pd.DataFrame:
    """Refuse a marks table that lacks a column of :data:`COLUMNS` or holds no rows (one line)."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"energy_to_quality: the marks table lacks columns {missing}; expected {COLUMNS}")
    if table.empty:
        raise ValueError("energy_to_quality: the marks table has no rows; expected one row per quality mark")
    return table


# ----------------------------------------------------------------------------------------------
# derived tables
def default_targets(table: pd.DataFrame, n: int = 3) -> list[float]:
    """``n`` NLL targets spread between the worst first mark and the best mark of the run.

    Targets from the data rather than fixed numbers: held-out NLL depends on the data and the crop,
    and a target no configuration reaches (or all reach at the first mark) says nothing.
    """
    check_marks(table)
    first = table.sort_values("step").groupby("config").heldout_nll_bits.first().max()
    best = table.heldout_nll_bits.min()
    if not (math.isfinite(first) and math.isfinite(best)) or first <= best:
        return [float(round(best, 4))]
    return [float(round(v, 4)) for v in np.linspace(first, best, n + 2)[1:-1]]


def energy_to_targets(table: pd.DataFrame, targets: Sequence[float]) -> pd.DataFrame:
    """Training joules each configuration needed to reach each held-out NLL target.

    The energy is that of the first mark at or below the target (marks are the only points
    measured; no interpolation between them), or :data:`NOT_REACHED`.
    Columns: ``target_nll_bits, config, energy_j, energy_j_low, energy_j_high, step, reached``.
    """
    check_marks(table)
    rows = []
    for target in targets:
        for name, marks in table.groupby("config", sort=False):
            hit = marks.sort_values("step")
            hit = hit[hit.heldout_nll_bits <= target]
            if hit.empty:
                rows.append(dict(target_nll_bits=target, config=name, energy_j=NOT_REACHED, reached=False))
            else:
                r = hit.iloc[0]
                rows.append(
                    dict(
                        target_nll_bits=target,
                        config=name,
                        energy_j=float(r.energy_j),
                        energy_j_low=r.energy_j_low,
                        energy_j_high=r.energy_j_high,
                        step=int(r.step),
                        reached=True,
                    )
                )
    cols = ["target_nll_bits", "config", "energy_j", "energy_j_low", "energy_j_high", "step", "reached"]
    return pd.DataFrame(rows).reindex(columns=cols)


def nll_at(marks: pd.DataFrame, joules: float) -> float:
    """Held-out NLL of one configuration after ``joules`` of training: its last mark at or below that
    energy (NaN before its first mark). The quality a run actually had, not an interpolation."""
    done = marks[marks.energy_j <= joules]
    return float(done.sort_values("step").heldout_nll_bits.iloc[-1]) if not done.empty else math.nan


def default_budgets(table: pd.DataFrame, n: int = 4) -> list[float]:
    """``n`` budgets spaced evenly on a log scale from the latest first mark (every configuration
    has a mark) to the largest energy any configuration spent."""
    check_marks(table)
    low = table.sort_values("step").groupby("config").energy_j.first().max()
    high = table.energy_j.max()
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
        return [float(high)]
    return [float(v) for v in np.geomspace(low, high, n)]


def best_at_budgets(table: pd.DataFrame, budgets: Sequence[float]) -> pd.DataFrame:
    """At each budget, every configuration's held-out NLL (:func:`nll_at`) and the best one.

    Columns: ``budget_j``, one ``<config>`` column of NLL bits each, ``best``, ``best_nll_bits``.
    """
    check_marks(table)
    groups = dict(tuple(table.groupby("config", sort=False)))
    rows = []
    for budget in budgets:
        row: dict[str, Any] = {"budget_j": float(budget)}
        values = {name: nll_at(marks, budget) for name, marks in groups.items()}
        row.update(values)
        scored = {k: v for k, v in values.items() if math.isfinite(v)}
        best = min(scored, key=scored.__getitem__) if scored else "no mark yet"
        row["best"], row["best_nll_bits"] = best, scored.get(best, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def crossings(table: pd.DataFrame) -> pd.DataFrame:
    """Where two configurations' curves cross: the energies at which the better of a pair changes.

    Both curves are compared on the marks of either (over the energy range both cover), as the
    quality each run had at that energy (:func:`nll_at`); a change of sign of the difference between
    two consecutive energies is a crossing, reported at the later energy (the first mark where the
    order is seen to have changed). Columns: ``energy_j, before, after`` (the better configuration
    below and from that energy on).
    """
    check_marks(table)
    groups = dict(tuple(table.groupby("config", sort=False)))
    names = list(groups)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            lo = max(groups[a].energy_j.min(), groups[b].energy_j.min())
            hi = min(groups[a].energy_j.max(), groups[b].energy_j.max())
            grid = sorted({e for e in pd.concat([groups[a].energy_j, groups[b].energy_j]) if lo <= e <= hi})
            leader = None
            for e in grid:
                da, db = nll_at(groups[a], e), nll_at(groups[b], e)
                if not (math.isfinite(da) and math.isfinite(db)) or da == db:
                    continue
                now = a if da < db else b
                if leader is not None and now != leader:
                    rows.append({"energy_j": float(e), "before": leader, "after": now})
                leader = now
    return pd.DataFrame(rows, columns=["energy_j", "before", "after"]).sort_values("energy_j", ignore_index=True)


def findings(
    table: pd.DataFrame,
    budgets: pd.DataFrame,
    crossed: pd.DataFrame,
    method: str | None = None,
    max_crossings: int = 5,
) -> list[str]:
    """The derived tables in words, every number from the data (for the notebook and the README);
    the first ``max_crossings`` crossings are spelled out, the rest counted."""
    check_marks(table)
    method = method or " / ".join(sorted(set(table.energy_method.dropna())))
    lines = []
    last = budgets.iloc[-1]
    lines.append(
        f"At the largest budget ({last.budget_j:.3g} J of training, {method}), {last.best} has the lowest held-out "
        f"NLL ({last.best_nll_bits:.4f} bits/sample)."
    )
    leaders = [str(b) for b in budgets.best]
    if len(set(leaders)) > 1:
        parts = ", ".join(f"{b} at {j:.3g} J" for b, j in zip(budgets.best, budgets.budget_j))
        lines.append(f"The best configuration changes with the budget: {parts}.")
    else:
        lines.append(f"{leaders[0]} is the best configuration at every budget compared ({len(leaders)} budgets).")
    if crossed.empty:
        lines.append("No two curves cross within the energy range both cover.")
    for r in crossed.head(max_crossings).itertuples():
        lines.append(
            f"The curves of {r.before} and {r.after} cross by {r.energy_j:.3g} J: below it {r.before} has the lower "
            f"held-out NLL, from there on {r.after}."
        )
    if len(crossed) > max_crossings:
        lines.append(
            f"... and {len(crossed) - max_crossings} more crossings up to {crossed.energy_j.max():.3g} J "
            "(the crossings table lists them all); curves that cross this often are within each other's noise."
        )
    return lines


def with_provenance(table: pd.DataFrame, profile: str, machine: str | None = None) -> pd.DataFrame:
    """``table`` with ``profile`` and ``machine`` columns, so an overwritten figure CSV says which
    profile and which machine it came from."""
    return table.assign(profile=profile, machine=machine or machine_label())


def at_budget(table: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's last mark (its quality at the common budget): one row per configuration."""
    check_marks(table)
    order = {c: i for i, c in enumerate(dict.fromkeys(table.config))}
    last = table.sort_values("step").groupby("config", sort=False).tail(1)
    return last.sort_values("config", key=lambda c: c.map(order)).reset_index(drop=True)


__all__ = [
    "COLUMNS",
    "NOT_REACHED",
    "BudgetRun",
    "at_budget",
    "best_at_budgets",
    "check_marks",
    "collect_marks",
    "crossings",
    "default_budgets",
    "default_targets",
    "energy_to_targets",
    "findings",
    "machine_label",
    "nll_at",
    "run_budget",
    "with_provenance",
]
