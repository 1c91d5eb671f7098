"""Notebook 06: held-out quality against cumulative training energy, one curve per configuration.

The marks come from :mod:`waveflow.experiments.energy_to_quality` (or anyone's marks table, with its
own quality and energy columns, :mod:`waveflow.analysis.curves`); an estimated energy is drawn with
its low/high band and the energy axis names how the joules were obtained.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .common import _axis_label


def energy_to_quality_figure_data(marks: pd.DataFrame, profile: str, machine: str) -> pd.DataFrame:
    """The plotted marks (``waveflow.experiments.energy_to_quality.COLUMNS``, one row per configuration and mark) with
    the profile and machine they came from, so a later run that overwrites the figure is visible in its CSV."""
    return marks.assign(profile=profile, machine=machine)


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

    An estimated energy is drawn with its low/high band (``<energy>_low``/``_high``, when the marks
    have them; horizontal: the estimate is uncertain in joules, not in quality); the x axis names
    how the energy was obtained when the marks have an ``energy_method`` column. ``budget_j`` draws
    the common budget as a vertical line.

    Args:
        quality, quality_label: the quality column and its axis label.
        energy, energy_label: the energy column and its axis label (in its unit).
        label: the column naming each curve; step: the column ordering a run's marks (None: energy).
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    palette = sns.color_palette("viridis", n_colors=max(marks[label].nunique(), 1))
    low_col, high_col = f"{energy}_low", f"{energy}_high"
    bounded = {low_col, high_col} <= set(marks.columns)
    for color, (name, m) in zip(palette, marks.groupby(label, sort=False)):
        m = m.sort_values(step or energy, kind="stable")
        x, y = m[energy].to_numpy(dtype=float), m[quality].to_numpy(dtype=float)
        if bounded and len(x):
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
    band = "\nshaded: the energy estimate's low–high bound" if bounded and marks[low_col].notna().any() else ""
    ax.set_title((title or "Quality bought per joule of training") + band, fontsize=10)
    ax.legend(title="configuration" if label == "config" else label, fontsize=8)
    fig.tight_layout()
    return fig
