"""Notebook 05: held-out quality against cumulative training energy, one curve per configuration.

The marks come from :mod:`waveflow.experiments.energy_to_quality` (or anyone's marks table, with its
own quality and energy columns, :mod:`waveflow.analysis.curves`); the energy axis names how the
joules were obtained, and an estimated energy is drawn with its low–high interval.

On one machine with one method the estimate's interval is usually the same multiplicative factor
for every mark (low = a × middle, high = b × middle, as with a fixed per-thread power range). On a
log axis that factor is a constant shift, so five bands would be five copies of one bracket, the
widest hiding the curves: :func:`common_interval_factor` detects it and the interval is drawn once,
as a bracket with its factors. Intervals that differ between curves keep one band per curve.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .common import _axis_label

#: Relative spread of the low/middle and high/middle ratios under which they count as one factor.
COMMON_FACTOR_RTOL = 0.01


def energy_to_quality_figure_data(marks: pd.DataFrame, profile: str, machine: str) -> pd.DataFrame:
    """The plotted marks (``waveflow.experiments.energy_to_quality.COLUMNS``, one row per configuration and mark) with
    the profile and machine they came from, so a later run that overwrites the figure is visible in its CSV."""
    return marks.assign(profile=profile, machine=machine)


def common_interval_factor(
    marks: pd.DataFrame, energy: str = "energy_j", rtol: float = COMMON_FACTOR_RTOL
) -> tuple[float, float] | None:
    """``(low / middle, high / middle)`` when every mark's interval is the same factor of its middle
    value (each ratio within ``rtol`` relative spread, over all curves), else None.

    Marks without bounds, or with a non-positive middle, are left out; None when none is left.
    """
    low_col, high_col = f"{energy}_low", f"{energy}_high"
    if not {low_col, high_col} <= set(marks.columns):
        return None
    mid = marks[energy].to_numpy(dtype=float)
    low, high = marks[low_col].to_numpy(dtype=float), marks[high_col].to_numpy(dtype=float)
    ok = np.isfinite(mid) & np.isfinite(low) & np.isfinite(high) & (mid > 0)
    if not ok.any():
        return None
    factors = []
    for ratio in (low[ok] / mid[ok], high[ok] / mid[ok]):
        centre = float(np.median(ratio))
        if centre <= 0 or float(np.max(np.abs(ratio - centre))) > rtol * centre:
            return None
        factors.append(centre)
    return factors[0], factors[1]


def _palette(n: int) -> list:
    """Colours that stay apart for up to ten curves (tab10), an even hue circle beyond."""
    return sns.color_palette("tab10" if n <= 10 else "husl", n_colors=max(n, 1))


def plot_energy_to_quality(
    marks: pd.DataFrame,
    budget_j: float | None = None,
    title: str = "",
    *,
    quality: str = "heldout_nll_bits",
    quality_label: str = "held-out NLL (bits per sample)",
    energy: str = "energy_j",
    energy_label: str = "training energy so far (J, evaluation excluded)",
    label: str = "config",
    step: str | None = "step",
) -> plt.Figure:
    """Quality against cumulative energy (log x), one line per model (the marks of
    :mod:`waveflow.analysis.curves`; by default held-out NLL against training joules).

    An estimated energy's interval (``<energy>_low``/``_high``, when the marks have them) is uncertain
    in joules, not in quality. When it is one factor common to every mark
    (:func:`common_interval_factor`), it is drawn once, as a bracket above the plot spanning
    ×low–×high around a dot, in the axis's own scale; otherwise each curve gets its horizontal band.
    The x axis names how the energy was obtained when the marks have an ``energy_method`` column.
    ``budget_j`` draws the common budget as a vertical line.

    Args:
        quality, quality_label: the quality column and its axis label.
        energy, energy_label: the energy column and its axis label (in its unit).
        label: the column naming each curve; step: the column ordering a run's marks (None: energy).
    """
    fig, ax = plt.subplots(figsize=(7, 4.6))
    palette = _palette(marks[label].nunique())
    low_col, high_col = f"{energy}_low", f"{energy}_high"
    bounded = {low_col, high_col} <= set(marks.columns) and bool(marks[low_col].notna().any())
    common = common_interval_factor(marks, energy) if bounded else None
    for color, (name, m) in zip(palette, marks.groupby(label, sort=False)):
        m = m.sort_values(step or energy, kind="stable")
        x, y = m[energy].to_numpy(dtype=float), m[quality].to_numpy(dtype=float)
        if bounded and common is None and len(x):
            low, high = m[low_col].to_numpy(dtype=float), m[high_col].to_numpy(dtype=float)
            if np.isfinite(low).all() and np.isfinite(high).all():
                ax.fill_betweenx(y, low, high, color=color, alpha=0.07, lw=0)
        ax.plot(x, y, marker="o", ms=4, color=color, label=str(name))
    if budget_j is not None:
        ax.axvline(budget_j, color="0.4", ls="--", lw=1)
        ax.annotate(
            "budget", (budget_j, 1.0), xycoords=("data", "axes fraction"), xytext=(-3, -10),
            textcoords="offset points", ha="right", fontsize=8, color="0.4",
        )  # fmt: skip
    ax.set_xscale("log")
    has_method = "energy_method" in marks.columns
    ax.set_xlabel(_axis_label(energy_label, marks, "energy_method") if has_method else energy_label, fontsize=9)
    ax.set_ylabel(quality_label)
    if common is not None:
        _common_bracket(ax, *common)
    band = (
        ""
        if not bounded
        else "\nbracket: the energy estimate's low–high bound, one factor for every mark"
        if common is not None
        else "\nshaded: the energy estimate's low–high bound"
    )
    ax.set_title((title or "Quality against cumulative training energy") + band, fontsize=10, pad=30 if common else 6)
    ax.legend(title="configuration" if label == "config" else label, fontsize=8)
    fig.tight_layout()
    return fig


def _common_bracket(ax: plt.Axes, low: float, high: float) -> None:
    """The interval shared by every mark, drawn once above the plot: a bracket from ×low to ×high
    around a dot, centred on the axis (in log x, the same width wherever a mark lies)."""
    lo, hi = ax.get_xlim()
    centre = np.sqrt(lo * hi)
    dot = centre / np.sqrt(low * high)  # the bracket [dot x low, dot x high] is centred on the axis
    if dot * low < lo or dot * high > hi:  # wider than the data: widen the axis to show it whole
        ax.set_xlim(min(lo, dot * low / 1.2), max(hi, dot * high * 1.2))
    y = 1.035
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.annotate(
        "", (dot * low, y), (dot * high, y), xycoords=trans, textcoords=trans,
        arrowprops={"arrowstyle": "|-|", "color": "0.25", "lw": 1, "shrinkA": 0, "shrinkB": 0, "mutation_scale": 4},
        annotation_clip=False,
    )  # fmt: skip
    ax.scatter([dot], [y], s=12, color="0.25", transform=trans, clip_on=False, zorder=3)
    ax.annotate(
        f"a mark at ● may lie anywhere from ×{low:.3g} to ×{high:.3g} its energy",
        (dot, y), xycoords=trans, xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
        fontsize=7, color="0.25", annotation_clip=False,
    )  # fmt: skip
