"""Notebook 06: held-out quality against cumulative training energy, one curve per configuration.

The marks come from :mod:`waveflow.experiments.energy_to_quality`; an estimated energy is drawn
with its low/high band and the energy axis names how the joules were obtained.
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


def plot_energy_to_quality(marks: pd.DataFrame, budget_j: float | None = None, title: str = "") -> plt.Figure:
    """Held-out NLL against cumulative training joules (log x), one line per configuration.

    An estimated energy is drawn with its low/high band (horizontal: the estimate is uncertain in
    joules, not in NLL); the x axis names how the joules were obtained. ``budget_j`` draws the common
    budget as a vertical line.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    palette = sns.color_palette("viridis", n_colors=max(marks.config.nunique(), 1))
    for color, (name, m) in zip(palette, marks.groupby("config", sort=False)):
        m = m.sort_values("step")
        x, y = m.energy_j.to_numpy(dtype=float), m.heldout_nll_bits.to_numpy(dtype=float)
        low, high = m.energy_j_low.to_numpy(dtype=float), m.energy_j_high.to_numpy(dtype=float)
        if np.isfinite(low).all() and np.isfinite(high).all() and len(x):
            ax.fill_betweenx(y, low, high, color=color, alpha=0.07, lw=0)
        ax.plot(x, y, marker="o", ms=4, color=color, label=str(name))
    if budget_j is not None:
        ax.axvline(budget_j, color="0.4", ls="--", lw=1)
        ax.annotate(
            "budget", (budget_j, 1.0), xycoords=("data", "axes fraction"), xytext=(-3, -10),
            textcoords="offset points", ha="right", fontsize=8, color="0.4",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(_axis_label("training energy so far (J, evaluation excluded)", marks, "energy_method"), fontsize=9)
    ax.set_ylabel("held-out NLL (bits per sample)")
    band = "\nshaded: the energy estimate's low–high bound" if marks.energy_j_low.notna().any() else ""
    ax.set_title((title or "Quality bought per joule of training") + band, fontsize=10)
    ax.legend(title="configuration", fontsize=8)
    fig.tight_layout()
    return fig
