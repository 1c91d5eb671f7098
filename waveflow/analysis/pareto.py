"""Pareto optimality for comparing models on quality and energy at once (paper §5).

All objectives are minimised (the paper uses 1 − MOS/5 and energy); the DataFrame helpers take a
``maximize`` list for the objectives where higher is better (a MOS, an accuracy), which are negated
internally. Point ``a`` dominates ``b`` when ``a`` is no worse in every objective and strictly better
in at least one, so equal points never dominate each other and both stay on the front. Works for any
number of objectives; the dominance matrix is O(n² · m) memory, fine for the hundreds of
configurations a study compares. ``waveflow pareto`` (:mod:`waveflow.analysis.command`) runs it on
any results CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def _as_points(points, name: str = "points") -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if arr.size else arr.reshape(0, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n_points, n_objectives), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"{name}: expected finite values, found {arr[tuple(bad)]} at row {bad[0]}, column {bad[1]}")
    return arr


def dominance_matrix(points: ArrayLike) -> np.ndarray:
    """``D[i, j]`` is True when point ``i`` dominates point ``j`` (minimisation)."""
    p = _as_points(points)
    le = (p[:, None, :] <= p[None, :, :]).all(axis=2)
    lt = (p[:, None, :] < p[None, :, :]).any(axis=2)
    return le & lt


def pareto_mask(points: ArrayLike) -> np.ndarray:
    """True for the non-dominated points (the first front)."""
    return ~dominance_matrix(points).any(axis=0)


def dominated_by(points: ArrayLike) -> list[list[int]]:
    """For each point, the indices of the points that dominate it (empty list = Pareto optimal)."""
    d = dominance_matrix(points)
    return [np.flatnonzero(d[:, j]).tolist() for j in range(d.shape[1])]


def non_dominated_sort(points: ArrayLike) -> list[list[int]]:
    """Successive fronts (Deb et al.'s fast non-dominated sort): front 0 is the Pareto set, front 1 is
    optimal once front 0 is removed, and so on. Returns lists of point indices, each sorted."""
    d = dominance_matrix(points)
    remaining = d.sum(axis=0)  # how many points dominate each point
    fronts: list[list[int]] = []
    current = np.flatnonzero(remaining == 0)
    done = np.zeros(len(remaining), dtype=bool)
    while current.size:
        fronts.append(current.tolist())
        done[current] = True
        remaining = remaining - d[current].sum(axis=0)
        current = np.flatnonzero((remaining == 0) & ~done)
    return fronts


def pareto_rank(points: ArrayLike) -> np.ndarray:
    """1-based front number of every point (1 = Pareto optimal)."""
    n = len(_as_points(points))
    rank = np.zeros(n, dtype=int)
    for i, front in enumerate(non_dominated_sort(points), start=1):
        rank[front] = i
    return rank


# ------------------------------------------------------------------------------------------
# Hypervolume
def reference_point(points: ArrayLike, margin: float = 0.1) -> np.ndarray:
    """A reference point just beyond the worst value of each objective: max + margin × (max − min).

    A zero range (all points equal in one objective) uses ``margin × |max|`` (or ``margin``) instead, so
    every point still adds volume.
    """
    p = _as_points(points)
    if len(p) == 0:
        raise ValueError("reference_point: expected at least one point, got none")
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"reference_point: margin must be > 0, got {margin!r}")
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = np.where(hi > lo, hi - lo, np.where(hi != 0, np.abs(hi), 1.0))
    return hi + margin * span


def _hv2d(p: np.ndarray, ref: np.ndarray) -> float:
    # Sweep in the first objective; each non-dominated point adds the rectangle between it, the
    # previous best second objective and the reference.
    order = np.lexsort((p[:, 1], p[:, 0]))
    volume, best_y = 0.0, ref[1]
    for x, y in p[order]:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return volume


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    # Exact "hypervolume by slicing objectives": sort on the last objective and sum, over the slabs
    # between consecutive values, slab height × the (d-1)-dimensional volume of the points below it.
    if len(p) == 0:
        return 0.0
    d = p.shape[1]
    if d == 1:
        return float(ref[0] - p[:, 0].min())
    if d == 2:
        return _hv2d(p, ref)
    p = p[np.argsort(p[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        height = upper - p[i, -1]
        if height > 0:
            below = p[: i + 1, :-1]
            volume += height * _hv(below[pareto_mask(below)], ref[:-1])
    return volume


def hypervolume(points: ArrayLike, reference: ArrayLike) -> float:
    """Volume of objective space dominated by ``points`` and bounded by ``reference`` (minimisation).

    Exact in any dimension (2-D by a sweep, higher by slicing, exponential in the number of objectives
    but instant for the handful of objectives and points of a model comparison).

    Args:
        points: (n, m) objective values.
        reference: (m,) a point strictly worse than every point in every objective.

    Raises:
        ValueError: if the reference does not bound all points, or shapes disagree.
    """
    p = _as_points(points)
    ref = np.asarray(reference, dtype=float).reshape(-1)
    if len(p) and ref.shape[0] != p.shape[1]:
        raise ValueError(f"hypervolume: reference has {ref.shape[0]} objectives, points have {p.shape[1]}")
    if not np.isfinite(ref).all():
        raise ValueError(f"hypervolume: reference must be finite, got {ref.tolist()}")
    if len(p) and not (p < ref).all():
        bad = int(np.flatnonzero(~(p < ref).all(axis=1))[0])
        raise ValueError(
            f"hypervolume: reference {ref.tolist()} must be strictly worse than every point in every "
            f"objective, but point {bad} is {p[bad].tolist()}"
        )
    return float(_hv(p[pareto_mask(p)], ref)) if len(p) else 0.0


def normalized_hypervolume(points: ArrayLike, reference: ArrayLike, ideal: ArrayLike | None = None) -> float:
    """Hypervolume as a fraction of the box between ``ideal`` (default: the per-objective minimum) and
    ``reference``, so fronts measured in different units (kWh vs Wh) can be compared on a 0–1 scale."""
    p = _as_points(points)
    ref = np.asarray(reference, dtype=float).reshape(-1)
    lo = p.min(axis=0) if ideal is None else np.asarray(ideal, dtype=float).reshape(-1)
    if lo.shape != ref.shape or not (lo < ref).all():
        raise ValueError(
            "normalized_hypervolume: expected ideal < reference in every objective, "
            f"got {lo.tolist()} and {ref.tolist()}"
        )
    return hypervolume(p, ref) / float(np.prod(ref - lo))


def hypervolume_contributions(points: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Exclusive contribution of each point: HV(all) − HV(all but that point). Dominated points add 0."""
    p = _as_points(points)
    total = hypervolume(p, reference)
    return np.array([total - hypervolume(np.delete(p, i, axis=0), reference) for i in range(len(p))])


# ------------------------------------------------------------------------------------------
# DataFrames
def pareto_table(df: pd.DataFrame, objectives: Sequence[str], label: str, maximize: Sequence[str] = ()) -> pd.DataFrame:
    """Copy of ``df`` with ``pareto_optimal``, ``rank`` (1 = optimal front) and ``dominated_by``.

    ``dominated_by`` lists the labels of the rows that dominate each row, ``"; "``-separated (empty for
    optimal rows), so the result reads well printed or saved as CSV.

    Args:
        df: one row per model/configuration.
        objectives: columns to minimise (at least one).
        label: column naming the rows (e.g. ``"model"``).
        maximize: subset of ``objectives`` to maximise instead (negated internally).
    """
    objectives = list(objectives)
    if not objectives:
        raise ValueError("pareto_table: expected at least one objective column, got none")
    missing = [c for c in [*objectives, label] if c not in df.columns]
    if missing:
        raise ValueError(f"pareto_table: column(s) {missing} not in the table; expected among {list(df.columns)}")
    extra = [c for c in maximize if c not in objectives]
    if extra:
        raise ValueError(f"pareto_table: maximize={extra} must be a subset of objectives {objectives}")
    values = df[objectives].apply(pd.to_numeric, errors="raise").to_numpy(dtype=float, copy=True)
    for j, c in enumerate(objectives):
        if c in maximize:
            values[:, j] = -values[:, j]
    try:
        dom = dominated_by(values)
    except ValueError as exc:
        raise ValueError(f"pareto_table: objectives {objectives}: {exc}") from None
    labels = df[label].astype(str).tolist()
    out = df.copy()
    out["pareto_optimal"] = [not d for d in dom]
    out["rank"] = pareto_rank(values)
    out["dominated_by"] = ["; ".join(labels[i] for i in d) for d in dom]
    return out


def pareto_front_from_csv(
    path: Path | str, objectives: Sequence[str], label: str, maximize: Sequence[str] = ()
) -> pd.DataFrame:
    """:func:`pareto_table` of a results CSV, for anyone's own measurements."""
    return pareto_table(pd.read_csv(path), objectives, label, maximize=maximize)


def dominated_summary(table: pd.DataFrame, label: str) -> str:
    """One sentence naming the dominated rows of a :func:`pareto_table` and who dominates them."""
    dominated = table[~table["pareto_optimal"]]
    if dominated.empty:
        return f"all {len(table)} are Pareto optimal (none is dominated)"
    parts = [f"{row[label]} (by {row['dominated_by']})" for _, row in dominated.iterrows()]
    optimal = ", ".join(table.loc[table["pareto_optimal"], label].astype(str))
    return f"dominated: {', '.join(parts)}; optimal: {optimal}"


def pareto_spaces(
    df: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    label: str,
    intervals: dict[str, tuple[str, str]] | None = None,
    maximize: Sequence[str] = (),
) -> pd.DataFrame:
    """:func:`pareto_table` in several objective spaces at once, stacked in one tidy frame.

    Args:
        df: one row per model.
        spaces: space name -> objective columns (minimised unless in ``maximize``), e.g.
            ``{"training": ["one_minus_pct_mos", "e_train_kwh"]}``.
        label: the column naming the rows.
        intervals: objective -> ``(low column, high column)`` of an estimate's interval; the matching
            axis gets ``x_low``/``x_high`` (or ``y_…``) columns. Dominance uses the values themselves.
        maximize: objectives, in any space, where higher is better (``["mos"]``).

    Returns:
        Columns ``space``, ``label``, ``x``/``y`` (first two objectives, for plotting), ``pareto_optimal``,
        ``rank``, ``dominated_by``, plus the objective names as ``objectives``.
    """
    intervals = intervals or {}
    parts = []
    for name, objectives in spaces.items():
        t = pareto_table(df, objectives, label, maximize=[c for c in maximize if c in objectives])
        part = pd.DataFrame({"space": name, label: t[label], "objectives": " vs ".join(objectives)})
        for axis, col in zip(("x", "y", "z"), objectives):
            part[axis] = t[col].astype(float).to_numpy()
            if col in intervals:
                bounds = df.set_index(label).loc[t[label], list(intervals[col])].astype(float).to_numpy()
                part[f"{axis}_low"], part[f"{axis}_high"] = bounds[:, 0], bounds[:, 1]
        part[["pareto_optimal", "rank", "dominated_by"]] = t[["pareto_optimal", "rank", "dominated_by"]].to_numpy()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    first = ["space", label, "objectives", *[a for a in ("x", "y", "z") if a in out.columns]]
    out = out[first + [c for c in out.columns if c not in first]]
    out["pareto_optimal"] = out["pareto_optimal"].astype(bool)
    out["rank"] = out["rank"].astype(int)
    return out


def hypervolume_summary(
    df: pd.DataFrame, spaces: dict[str, Sequence[str]], margin: float = 0.1, maximize: Sequence[str] = ()
) -> pd.DataFrame:
    """Hypervolume of the Pareto front in each space, with the reference point used.

    The reference is :func:`reference_point` (worst value + ``margin`` × range per objective); the
    normalised value divides by the box between the per-objective best value and the reference, so the
    training (kWh) and generation (Wh) fronts can be compared on one 0–1 scale. Objectives in
    ``maximize`` are negated for the volume; the reference is printed in their own units (below the
    worst value).
    """
    rows = []
    for name, objectives in spaces.items():
        sign = np.array([-1.0 if c in maximize else 1.0 for c in objectives])
        p = df[list(objectives)].to_numpy(dtype=float) * sign
        ref = reference_point(p, margin)
        rows.append(
            {
                "space": name,
                "objectives": " vs ".join(objectives),
                "reference": "(" + ", ".join(f"{r:.6g}" for r in ref * sign) + ")",
                "n_points": len(p),
                "n_optimal": int(pareto_mask(p).sum()),
                "hypervolume": hypervolume(p, ref),
                "normalized_hypervolume": normalized_hypervolume(p, ref),
            }
        )
    return pd.DataFrame(rows)
