"""Notebook 06: Pareto fronts of quality against energy, on the paper's numbers (Figure 2,
:func:`plot_pareto_spaces`) and on ours (:func:`plot_measured_pareto`); and anyone's results, in
any objectives, for the ``pareto`` command (:func:`plot_pareto`).

Fronts, reference points and hypervolumes are computed by :mod:`waveflow.analysis.pareto`; this
module draws them, optimal points blue and dominated red (the paper's Fig. 2 colours).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..pareto import normalized_hypervolume, pareto_table, reference_point
from ..plotting import save_figure_as
from .common import _axis_label


# ------------------------------------------------------------------------------------------
# the paper's numbers (Fig. 2)
def plot_front(ax, table: pd.DataFrame, x: str, y: str, label: str, hv_reference=None) -> None:
    """Draw a 2-D :func:`pareto_table`: optimal points blue, dominated red (the paper's Fig. 2 colours),
    the front as a staircase, and, given a reference, the dominated region shaded."""
    opt = table[table["pareto_optimal"]].sort_values(x)
    dom = table[~table["pareto_optimal"]]
    if hv_reference is not None:
        rx, ry = hv_reference
        xs, ys = [opt[x].iloc[0]], [ry]
        for px, py in zip(opt[x], opt[y]):
            xs += [px, px]
            ys += [ys[-1], py]
        xs.append(rx)
        ys.append(ys[-1])
        ax.fill_between(xs, ys, ry, step=None, color="tab:blue", alpha=0.08, lw=0)
        ax.plot(xs[1:], ys[1:], color="tab:blue", lw=1, alpha=0.6)
        ax.plot([rx], [ry], marker="x", color="grey", ls="none")
        ax.annotate(
            "reference", (rx, ry), textcoords="offset points", xytext=(-4, -12), ha="right", fontsize=8, color="grey"
        )
    ax.scatter(opt[x], opt[y], color="tab:blue", s=45, zorder=3, label="Pareto optimal")
    if len(dom):
        ax.scatter(dom[x], dom[y], color="tab:red", s=45, zorder=3, label="dominated")
    for _, row in table.iterrows():
        ax.annotate(str(row[label]), (row[x], row[y]), textcoords="offset points", xytext=(5, 4), fontsize=9)


def plot_pareto_spaces(
    df: pd.DataFrame,
    spaces: dict[str, Sequence[str]],
    label: str,
    margin: float = 0.1,
    axis_labels: dict[str, str] | None = None,
    ncols: int = 2,
    intervals: dict[str, tuple[str, str]] | None = None,
    log_energy: bool = False,
):
    """One panel per 2-objective space: quality (first objective) on y against energy on x, optimal
    points blue and dominated red, the front's hypervolume shaded and printed.

    Args:
        intervals: ``{objective: (low column, high column)}``; an energy objective listed here is
            drawn with horizontal error bars (an estimate's interval). Fronts and hypervolumes are
            computed on the reported (middle) values.
        log_energy: log scale on the energy axis (for intervals spanning an order of magnitude or more).

    Returns:
        The matplotlib figure.
    """
    axis_labels = axis_labels or {}
    intervals = intervals or {}
    nrows = -(-len(spaces) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (space, objectives) in zip(axes.flat, spaces.items()):
        if len(objectives) != 2:
            raise ValueError(f"plot_pareto_spaces: space {space!r} has {len(objectives)} objectives; expected 2")
        q, e = objectives
        t = pareto_table(df, [q, e], label)
        ref = reference_point(t[[e, q]].to_numpy(dtype=float), margin)
        plot_front(ax, t, x=e, y=q, label=label, hv_reference=ref)
        if e in intervals:
            lo, hi = intervals[e]
            v = df[e].to_numpy(dtype=float)
            xerr = np.vstack([v - df[lo].to_numpy(dtype=float), df[hi].to_numpy(dtype=float) - v])
            ax.errorbar(v, df[q], xerr=xerr, fmt="none", ecolor="0.4", capsize=3, lw=1, zorder=2)
        if log_energy:
            ax.set_xscale("log")
        nhv = normalized_hypervolume(t[[e, q]].to_numpy(dtype=float), ref)
        ax.text(
            0.02,
            0.03,
            f"normalised hypervolume {nhv:.3f}",
            transform=ax.transAxes,
            fontsize=8,
            color="tab:blue",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
        )
        ax.set_xlabel(axis_labels.get(e, e))
        ax.set_ylabel(axis_labels.get(q, q))
        dominated = ", ".join(t.loc[~t["pareto_optimal"], label].astype(str)) or "none"
        ax.set_title(f"{space}: dominated = {dominated}", fontsize=10)
    for ax in list(axes.flat)[len(spaces) :]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="lower left", bbox_to_anchor=(0.0, 0.08), fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# our measurements: quality at notebook 05's common budget against the energy spent
def _dodged_labels(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], gap_pt: float = 11) -> None:
    """Label points so that no two labels overlap: labels are stacked upwards in display space, each at
    least ``gap_pt`` points above the previous one, with a thin leader line when moved off its point."""
    ax.autoscale_view()
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)]))
    px_per_pt = ax.figure.dpi / 72.0
    last = -np.inf
    for i in np.argsort(pts[:, 1], kind="stable"):
        y = max(pts[i, 1], last + gap_pt * px_per_pt)
        last = y
        dy = (y - pts[i, 1]) / px_per_pt
        ax.annotate(
            str(labels[i]), (xs[i], ys[i]), xytext=(7, dy - 3), textcoords="offset points", fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if dy > 1 else None,
        )  # fmt: skip


def _sparse_ticks(ax, axis: str, log: bool) -> None:
    """At most a handful of tick labels in plain numbers, so neighbouring labels never run together."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    ax.autoscale_view()
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    # 1-2-5 ticks within two decades; beyond, powers of ten only (a 1-2-5 series would crowd the axis)
    subs = (1.0, 2.0, 5.0) if log and lo > 0 and np.log10(hi / lo) <= 2 else (1.0,)
    target.set_major_locator(LogLocator(subs=subs, numticks=5) if log else MaxNLocator(4))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"))
    target.set_minor_formatter(NullFormatter())


def plot_measured_pareto(
    table: pd.DataFrame,
    title_note: str = "",
    *,
    quality: str = "heldout_nll_bits",
    quality_label: str = "held-out NLL at the common budget\n(bits per sample; lower is better)",
    lower_is_better: bool = True,
    label: str = "config",
    quality_interval: tuple[str, str] | None = None,
    dominated: dict[str, dict[str, list[str]]] | None = None,
    generation_words: str = "energy to generate 100 s of audio (Wh, the scored models)",
) -> plt.Figure:
    """Notebook 06 on our measurements: held-out NLL at the common training budget of notebook 05
    against the training energy spent (the budget) and against E_gen of the very same models.

    ``table`` has one row per configuration with ``config, heldout_nll_bits, energy_j(_low/_high),
    energy_method, e_gen_wh(_low/_high), e_gen_wh_kind``. Optimal points are blue, dominated red; an
    estimated energy has its low/high bound as a horizontal error bar. Titles and axes are in words,
    tick labels are few and plain, and point labels are stacked so none overlap.

    Args:
        quality, quality_label, lower_is_better: another quality measure (a predicted MOS: higher
            is better) in place of held-out NLL, with its axis label.
        label: the column naming the points.
        quality_interval: ``(low, high)`` columns of the quality's interval (a bootstrap over held-out
            clips), drawn as vertical error bars.
        dominated: ``{"training"|"generation": {model: [models dominating it]}}`` decided with the
            quality's uncertainty (:func:`waveflow.analysis.uncertainty.dominated_beyond_noise`);
            it replaces the plain Pareto test, which would call a difference inside the noise a
            domination. A model absent from the dict is not dominated.
        generation_words: the x label of the generation panel (what was metered).
    """
    from ..pareto import pareto_table

    spaces = {
        "training": ("energy_j", "energy_method", "training energy spent (J; the common budget of notebook 05)"),
        "generation": ("e_gen_wh", "e_gen_wh_kind", generation_words),
    }
    maximize = () if lower_is_better else (quality,)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (space, (x, method, words)) in zip(axes, spaces.items()):
        t = pareto_table(table, [quality, x], label, maximize=maximize)
        if dominated is not None:
            decided = dominated.get(space, {})
            t["pareto_optimal"] = ~t[label].isin(list(decided))
        for optimal, color, name in ((True, "tab:blue", "Pareto optimal"), (False, "tab:red", "dominated")):
            part = t[t.pareto_optimal == optimal]
            if len(part):
                ax.scatter(part[x], part[quality], color=color, s=40, zorder=3, label=name)
        low, high = f"{x}_low", f"{x}_high"
        bounded = {low, high} <= set(table.columns) and bool(table[low].notna().all())
        if bounded:
            v = table[x].to_numpy(dtype=float)
            xerr = np.vstack([v - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - v])
            ax.errorbar(v, table[quality], xerr=xerr, fmt="none", ecolor="0.6", capsize=3, lw=1, zorder=2)
        if quality_interval is not None:
            q_low, q_high = quality_interval
            q = table[quality].to_numpy(dtype=float)
            yerr = np.vstack([q - table[q_low].to_numpy(dtype=float), table[q_high].to_numpy(dtype=float) - q])
            ax.errorbar(table[x], q, yerr=yerr, fmt="none", ecolor="0.35", capsize=3, lw=1, zorder=2)
        # log when the numbers or their bounds span a factor of 3 or more (an estimate's bound often does)
        span = table[[x, high]] if bounded else table[[x]]
        log = space == "generation" or bounded or float(span.max().max()) > 3 * float(table[x].min())
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(_axis_label(words, table, method), fontsize=9)
        ax.set_ylabel(quality_label, fontsize=9)
        names = ", ".join(t.loc[~t.pareto_optimal, label].astype(str)) or "none"
        what = "training energy" if space == "training" else "generation energy"
        beyond = " beyond the noise" if dominated is not None else ""
        ax.set_title(f"Quality against {what}\ndominated{beyond}: {names}", fontsize=10)
        ax.margins(x=0.15, y=0.2)
        _sparse_ticks(ax, "x", log)
        _sparse_ticks(ax, "y", False)
    axes[0].legend(fontsize=8, loc="best")
    if title_note:
        fig.suptitle(title_note, fontsize=10)
    fig.tight_layout()
    # Labels last: their offsets are computed in display space, which the layout above has fixed.
    for ax, (x, _, _) in zip(axes, spaces.values()):
        _dodged_labels(ax, table[x].to_numpy(dtype=float), table[quality].to_numpy(dtype=float), table[label])
    return fig


# ------------------------------------------------------------------------------------------------
# anyone's results: the ``pareto`` command
def _front_line(ax, table: pd.DataFrame, x: str, y: str, maximize: Sequence[str]) -> None:
    """The 2-D front as the staircase bounding the region its points dominate: after each optimal
    point (in x order) the line holds y until the next x when x is minimised, and moves first when
    x is maximised."""
    opt = table[table["pareto_optimal"]].sort_values(x, kind="stable")
    if len(opt) > 1:
        where = "pre" if x in maximize else "post"
        ax.step(opt[x], opt[y], where=where, color="tab:blue", lw=1, alpha=0.6, zorder=2)


def _direction(column: str, maximize: Sequence[str]) -> str:
    return f"{column} ({'higher' if column in maximize else 'lower'} is better)"


def plot_pareto(
    table: pd.DataFrame,
    objectives: Sequence[str],
    label: str,
    maximize: Sequence[str] = (),
    title: str = "",
) -> plt.Figure:
    """Anyone's results as a Pareto plot: a :func:`~waveflow.analysis.pareto.pareto_table` (with its
    ``pareto_optimal`` column) drawn optimal blue, dominated red, every point labelled.

    Two objectives: one scatter, the first objective on x and the second on y, with the front as a
    staircase. More: one panel per pair of objectives, coloured by optimality in **all** of them
    (a point optimal in three objectives may look dominated in a two-objective projection), without
    a staircase, which would only be that projection's front. Each axis says which way is better.
    """
    objectives = list(objectives)
    if len(objectives) < 2:
        raise ValueError(f"plot_pareto: objectives {objectives}; expected at least two")
    pairs = [(objectives[i], objectives[j]) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    ncols = min(len(pairs), 3)
    nrows = -(-len(pairs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (x, y) in zip(axes.flat, pairs):
        for optimal, color, name in ((True, "tab:blue", "Pareto optimal"), (False, "tab:red", "dominated")):
            part = table[table["pareto_optimal"] == optimal]
            if len(part):
                ax.scatter(part[x], part[y], color=color, s=40, zorder=3, label=name)
        if len(objectives) == 2:
            _front_line(ax, table, x, y, maximize)
        ax.set_xlabel(_direction(x, maximize), fontsize=9)
        ax.set_ylabel(_direction(y, maximize), fontsize=9)
        ax.margins(x=0.15, y=0.2)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="best")
    dominated = ", ".join(table.loc[~table["pareto_optimal"], label].astype(str)) or "none"
    colour = f" (colour: optimal in all {len(objectives)} objectives)" if len(objectives) > 2 else ""
    fig.suptitle(title or f"Pareto front of {', '.join(objectives)}: dominated {dominated}{colour}", fontsize=10)
    fig.tight_layout()
    # Labels last: their offsets are computed in display space, which the layout above has fixed.
    for ax, (x, y) in zip(axes.flat, pairs):
        _dodged_labels(ax, table[x].to_numpy(dtype=float), table[y].to_numpy(dtype=float), table[label].tolist())
    return fig


def save_pareto_figure(
    table: pd.DataFrame, objectives: Sequence[str], label: str, path: Path | str, maximize: Sequence[str] = ()
) -> dict[str, Path]:
    """Draw :func:`plot_pareto` of a :func:`~waveflow.analysis.pareto.pareto_table`, write it to
    ``path`` (format by suffix) with ``table`` as the CSV beside it, and close it (a command may
    draw many in one process)."""
    fig = plot_pareto(table, objectives, label, maximize=maximize)
    try:
        return save_figure_as(fig, path, table)
    finally:
        plt.close(fig)
