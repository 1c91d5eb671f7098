"""Quality against energy, from anyone's marks: the energy each model needed to reach a quality, the
best model at a budget, and where two curves cross.

A *marks table* has one row per quality mark of a run: the row's model (``label``), the order of
its marks (``step``), the cumulative energy spent so far (``energy``) and the quality reached
(``quality``), lower or higher being better. Every helper takes these column names as keyword
arguments whose defaults are the columns of :mod:`waveflow.experiments.energy_to_quality`'s marks
(:data:`COLUMNS`: held-out NLL in bits per sample, lower is better, against training joules), so
one dict of names serves them all::

    cols = dict(quality="mos", lower_is_better=False, energy="energy_kwh", label="model")
    at_budget(marks, **cols); best_at_budgets(marks, [1, 10], **cols); crossings(marks, **cols)

Only measured marks are used, never an interpolation between them: a run's quality at an energy is
that of its last mark at or below that energy. Pure pandas, no torch, so results measured anywhere
can be analysed without the training stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: One row per quality mark of :mod:`waveflow.experiments.energy_to_quality`, in this order
#: (``build/results/energy_to_quality.csv``).
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
#: The default columns of every helper: those of :data:`COLUMNS`.
QUALITY, ENERGY, LABEL, STEP = "heldout_nll_bits", "energy_j", "config", "step"


@dataclass(frozen=True)
class _Columns:
    """The column names and the direction of one call; the helpers' comparisons go through it."""

    quality: str = QUALITY
    lower_is_better: bool = True
    energy: str = ENERGY
    label: str = LABEL
    step: str | None = STEP

    def __post_init__(self) -> None:
        if not isinstance(self.lower_is_better, (bool, np.bool_)):
            raise ValueError(f"energy_to_quality: lower_is_better={self.lower_is_better!r}; expected True or False")
        for name in ("quality", "energy", "label"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"energy_to_quality: {name}={getattr(self, name)!r}; expected a column name")

    @property
    def needed(self) -> list[str]:
        return [c for c in (self.label, self.step, self.energy, self.quality) if c is not None]

    def check(self, table: pd.DataFrame) -> _Columns:
        """Itself, once ``table`` holds rows and every column read, with numbers where numbers are compared."""
        check_marks(table, self.needed)
        for col in (self.energy, self.quality):
            if not pd.api.types.is_numeric_dtype(table[col]):
                raise ValueError(
                    f"energy_to_quality: column {col!r} holds non-numbers (dtype {table[col].dtype}); expected numbers"
                )
        return self

    def ordered(self, marks: pd.DataFrame) -> pd.DataFrame:
        """A run's marks in the order they were taken: by ``step``, or by energy when there is no step."""
        return marks.sort_values(self.step or self.energy, kind="stable")

    def reached(self, values: pd.Series, target: float) -> pd.Series:
        return values <= target if self.lower_is_better else values >= target

    def best(self, values: dict[Any, float]) -> Any:
        pick = min if self.lower_is_better else max
        return pick(values, key=values.__getitem__)

    def sign(self) -> float:
        """+1 when lower is better, -1 otherwise: ``sign * quality`` is always lower-is-better."""
        return 1.0 if self.lower_is_better else -1.0

    @property
    def stem(self) -> str:
        """How derived columns name the quality: ``nll_bits`` for the default, else the column itself."""
        return "nll_bits" if self.quality == QUALITY else self.quality

    @property
    def budget_column(self) -> str:
        return "budget_j" if self.energy == ENERGY else f"budget_{self.energy}"

    @property
    def noun(self) -> str:
        return "configuration" if self.label == LABEL else "model"


def check_marks(table: pd.DataFrame, columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """Refuse a marks table that lacks one of ``columns`` (default: all of :data:`COLUMNS`) or holds
    no rows, in one line; the helpers check only the columns they read."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"energy_to_quality: the marks table lacks columns {missing}; expected {list(columns)}")
    if table.empty:
        raise ValueError("energy_to_quality: the marks table has no rows; expected one row per quality mark")
    return table


def default_targets(
    table: pd.DataFrame,
    n: int = 3,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> list[float]:
    """``n`` quality targets spread between the worst first mark and the best mark of the run.

    Targets from the data rather than fixed numbers: a quality measure depends on the data and the
    crop, and a target no model reaches (or all reach at the first mark) says nothing. Ordered from
    the easiest target to the hardest.
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    s = c.sign()
    first = (s * c.ordered(table).groupby(c.label)[c.quality].first()).max()
    best = (s * table[c.quality]).min()
    if not (math.isfinite(first) and math.isfinite(best)) or first <= best:
        return [float(round(s * best, 4))]
    return [float(round(s * v, 4)) for v in np.linspace(first, best, n + 2)[1:-1]]


def energy_to_targets(
    table: pd.DataFrame,
    targets: Sequence[float],
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> pd.DataFrame:
    """The energy each model needed to reach each quality target.

    The energy is that of the first mark at or better than the target (marks are the only points
    measured; no interpolation between them), or :data:`NOT_REACHED`. Columns:
    ``target_<quality>`` (``target_nll_bits`` by default), ``<label>``, ``<energy>``,
    ``<energy>_low``, ``<energy>_high`` (NaN where the table has no bounds), ``<step>`` (``mark``,
    the 1-based mark number, when ``step`` is None), ``reached``.
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    target_col = f"target_{c.stem}"
    low, high = f"{c.energy}_low", f"{c.energy}_high"
    order = c.step or "mark"
    rows = []
    for target in targets:
        for name, marks in table.groupby(c.label, sort=False):
            ordered = c.ordered(marks).reset_index(drop=True)
            hit = ordered[c.reached(ordered[c.quality], target)]
            if hit.empty:
                rows.append({target_col: target, c.label: name, c.energy: NOT_REACHED, "reached": False})
                continue
            r = hit.iloc[0]
            rows.append(
                {
                    target_col: target,
                    c.label: name,
                    c.energy: float(r[c.energy]),
                    low: r.get(low, math.nan),
                    high: r.get(high, math.nan),
                    order: int(r[c.step]) if c.step else int(hit.index[0]) + 1,
                    "reached": True,
                }
            )
    return pd.DataFrame(rows).reindex(columns=[target_col, c.label, c.energy, low, high, order, "reached"])


def quality_at(
    marks: pd.DataFrame,
    joules: float,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> float:
    """Quality of one model's run after ``joules`` (in the energy column's unit): its last mark at or
    below that energy (NaN before its first mark). The quality a run actually had, not an
    interpolation. ``lower_is_better`` and ``label`` are accepted so one dict of names serves every
    helper; a single run needs neither."""
    c = _Columns(quality, lower_is_better, energy, label, step)
    done = marks[marks[c.energy] <= joules]
    return float(c.ordered(done)[c.quality].iloc[-1]) if not done.empty else math.nan


#: :func:`quality_at` under the name it has for the default quality, held-out NLL.
nll_at = quality_at


def default_budgets(
    table: pd.DataFrame,
    n: int = 4,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> list[float]:
    """``n`` budgets spaced evenly on a log scale from the latest first mark (every model has a
    mark) to the largest energy any model spent."""
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    low = c.ordered(table).groupby(c.label)[c.energy].first().max()
    high = table[c.energy].max()
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high <= low:
        return [float(high)]
    return [float(v) for v in np.geomspace(low, high, n)]


def best_at_budgets(
    table: pd.DataFrame,
    budgets: Sequence[float],
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> pd.DataFrame:
    """At each budget, every model's quality (:func:`quality_at`) and the best one.

    Columns: the budget (``budget_j`` by default, ``budget_<energy>`` for another energy column),
    one column of quality per model, ``best``, and the best quality (``best_nll_bits`` by default,
    ``best_<quality>`` otherwise). Before any model has a mark, ``best`` is ``"no mark yet"``.
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    groups = dict(tuple(table.groupby(c.label, sort=False)))
    rows = []
    for budget in budgets:
        row: dict[str, Any] = {c.budget_column: float(budget)}
        values = {
            name: quality_at(marks, budget, quality=c.quality, energy=c.energy, step=c.step)
            for name, marks in groups.items()
        }
        row.update(values)
        scored = {k: v for k, v in values.items() if math.isfinite(v)}
        best = c.best(scored) if scored else "no mark yet"
        row["best"], row[f"best_{c.stem}"] = best, scored.get(best, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def crossings(
    table: pd.DataFrame,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> pd.DataFrame:
    """Where two models' curves cross: the energies at which the better of a pair changes.

    Both curves are compared on the marks of either (over the energy range both cover), as the
    quality each run had at that energy (:func:`quality_at`); a change of sign of the difference
    between two consecutive energies is a crossing, reported at the later energy (the first mark
    where the order is seen to have changed). Columns: ``<energy>, before, after`` (the better model
    below and from that energy on).
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    groups = dict(tuple(table.groupby(c.label, sort=False)))
    names = list(groups)

    def at(name: Any, e: float) -> float:
        return quality_at(groups[name], e, quality=c.quality, energy=c.energy, step=c.step)

    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ea, eb = groups[a][c.energy], groups[b][c.energy]
            lo, hi = max(ea.min(), eb.min()), min(ea.max(), eb.max())
            grid = sorted({e for e in pd.concat([ea, eb]) if lo <= e <= hi})
            leader = None
            for e in grid:
                da, db = at(a, e), at(b, e)
                if not (math.isfinite(da) and math.isfinite(db)) or da == db:
                    continue
                now = c.best({a: da, b: db})
                if leader is not None and now != leader:
                    rows.append({c.energy: float(e), "before": leader, "after": now})
                leader = now
    return pd.DataFrame(rows, columns=[c.energy, "before", "after"]).sort_values(c.energy, ignore_index=True)


def findings(
    table: pd.DataFrame,
    budgets: pd.DataFrame,
    crossed: pd.DataFrame,
    method: str | None = None,
    max_crossings: int = 5,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
    quality_label: str = "held-out NLL",
    quality_unit: str = "bits/sample",
    energy_unit: str = "J",
    energy_use: str = "training",
) -> list[str]:
    """The derived tables (:func:`best_at_budgets`, :func:`crossings` with the same column names) in
    words, every number from the data; the first ``max_crossings`` crossings are spelled out, the
    rest counted.

    Args:
        method: how the energy was obtained (default: the table's ``energy_method`` values, if any).
        quality_label, quality_unit: the quality in words (``"predicted MOS"``, ``""``).
        energy_unit, energy_use: the energy's unit and what it was spent on (``""``: not said).

    The rows are called configurations under the default ``label`` and models otherwise.
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    if method is None:
        method = " / ".join(sorted(set(table["energy_method"].dropna()))) if "energy_method" in table else ""
    most, more = ("lowest", "lower") if c.lower_is_better else ("highest", "higher")
    unit = f" {quality_unit}" if quality_unit else ""
    last = budgets.iloc[-1]
    spent = [f"{last[c.budget_column]:.3g} {energy_unit}" + (f" of {energy_use}" if energy_use else "")]
    where = ", ".join(spent + ([method] if method else []))
    lines = [
        f"At the largest budget ({where}), {last['best']} has the {most} {quality_label} "
        f"({last[f'best_{c.stem}']:.4f}{unit})."
    ]
    leaders = [str(b) for b in budgets["best"]]
    if len(set(leaders)) > 1:
        parts = ", ".join(f"{b} at {j:.3g} {energy_unit}" for b, j in zip(budgets["best"], budgets[c.budget_column]))
        lines.append(f"The best {c.noun} changes with the budget: {parts}.")
    else:
        lines.append(f"{leaders[0]} is the best {c.noun} at every budget compared ({len(leaders)} budgets).")
    if crossed.empty:
        lines.append("No two curves cross within the energy range both cover.")
    for _, r in crossed.head(max_crossings).iterrows():
        e, before, after = r[c.energy], r["before"], r["after"]
        lines.append(
            f"The curves of {before} and {after} cross by {e:.3g} {energy_unit}: below it {before} has the {more} "
            f"{quality_label}, from there on {after}."
        )
    if len(crossed) > max_crossings:
        lines.append(
            f"... and {len(crossed) - max_crossings} more crossings up to {crossed[c.energy].max():.3g} {energy_unit} "
            "(the crossings table lists them all); curves that cross this often are within each other's noise."
        )
    return lines


def at_budget(
    table: pd.DataFrame,
    budget: float | None = None,
    *,
    quality: str = QUALITY,
    lower_is_better: bool = True,
    energy: str = ENERGY,
    label: str = LABEL,
    step: str | None = STEP,
) -> pd.DataFrame:
    """Each model's last mark (its quality at the common budget): one row per model, in the order
    the models first appear.

    With ``budget``, each model's last mark at or below that energy instead (a model with no mark
    that early is left out): the quality every run had when it had spent the same energy.
    """
    c = _Columns(quality, lower_is_better, energy, label, step).check(table)
    order = {name: i for i, name in enumerate(dict.fromkeys(table[c.label]))}
    spent = table if budget is None else table[table[c.energy] <= budget]
    last = c.ordered(spent).groupby(c.label, sort=False).tail(1)
    return last.sort_values(c.label, key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


__all__ = [
    "COLUMNS",
    "ENERGY",
    "LABEL",
    "NOT_REACHED",
    "QUALITY",
    "STEP",
    "at_budget",
    "best_at_budgets",
    "check_marks",
    "crossings",
    "default_budgets",
    "default_targets",
    "energy_to_targets",
    "findings",
    "nll_at",
    "quality_at",
]
