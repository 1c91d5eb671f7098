"""Notebook 01: the literature survey's Figure 1, papers reporting each quality and complexity measure.

The counts come from :mod:`waveflow.analysis.survey`; this module only draws them.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.patches import Patch

from ..survey import COMPLEXITY, GROUP_COLORS, QUALITY


def plot_counts(ax, counts: pd.DataFrame) -> None:
    """Figure 1: one bar per measure, quality in red on the left, complexity in green on the right."""
    colors = [GROUP_COLORS[g] for g in counts["group"]]
    x = range(len(counts))
    ax.bar(x, counts["n_papers"], color=colors)
    for i, n in zip(x, counts["n_papers"]):
        ax.annotate(str(n), (i, n), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=8)
    ax.set_xticks(list(x))
    ax.set_xticklabels(counts["label"], rotation=45, ha="right")
    ax.set_ylim(0, max(1, int(counts["n_papers"].max())) * 1.15)
    split = int((counts["group"] == QUALITY).sum()) - 0.5
    ax.axvline(split, color="grey", lw=0.8, ls="--")
    ax.set_ylabel(f"papers reporting it (of {int(counts['n_surveyed'].iloc[0])})")
    ax.legend(
        handles=[
            Patch(color=GROUP_COLORS[QUALITY], label="quality of the samples"),
            Patch(color=GROUP_COLORS[COMPLEXITY], label="complexity / performance"),
        ],
        loc="upper center",
        fontsize=8,
    )
