"""Notebook 07's figure: the vocoder table on this machine.

Left, energy per second of audio (log) against counted GFLOP per second of audio (log), one point per
model coloured by family, with the estimate's interval as an error bar; right, the relative-energy
ranking against the reference model measured in the same run, with its (much narrower) interval.
Both axes name how the energy was obtained, and the title says the weights are random.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import _axis_label, _yerr

#: the columns of the table the figure reads, in the order its CSV keeps them
FIGURE_COLUMNS = [
    "model", "family", "group", "params", "steps", "clip_s", "xrt", "wall_cv", "gflop_per_audio_s",
    "j_per_audio_s", "j_per_audio_s_low", "j_per_audio_s_high", "energy_cv", "optimal_batch",
    "j_per_audio_s_optimal", "relative_energy", "relative_energy_low", "relative_energy_high", "reference",
    "vocos_xrt", "peak_mib", "energy_method", "hardware", "note",
]


def _family_colours(families: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    return {f: cmap(i % 20) for i, f in enumerate(dict.fromkeys(families))}


def vocoder_figure_data(table: pd.DataFrame) -> pd.DataFrame:
    """The plotted numbers, one row per model, ranked by relative energy (the right panel's order)."""
    missing = [c for c in FIGURE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"vocoder figure: the table lacks columns {missing}; pass measure_vocoders()'s table")
    return table[FIGURE_COLUMNS].sort_values("relative_energy", kind="stable").reset_index(drop=True)


def plot_vocoder_energy(table: pd.DataFrame, machine: str = "") -> tuple[Figure, pd.DataFrame]:
    """The two-panel figure and its data (:func:`vocoder_figure_data`)."""
    data = vocoder_figure_data(table)
    colours = _family_colours(list(data["family"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(4.2, 0.28 * len(data) + 1.5)),
                                      gridspec_kw={"width_ratios": [1.25, 1]})
    err = _yerr(data, "j_per_audio_s")
    for family, group in data.groupby("family", sort=False):
        idx = group.index.to_numpy()
        yerr = None if err is None else err[:, idx]
        left.errorbar(group["gflop_per_audio_s"], group["j_per_audio_s"], yerr=yerr, fmt="o", ms=5, capsize=2,
                      color=colours[family], label=family)
    for _, row in data.iterrows():
        left.annotate(row["model"], (row["gflop_per_audio_s"], row["j_per_audio_s"]), fontsize=6,
                      xytext=(3, 2), textcoords="offset points")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("counted GFLOP per second of audio (FlopCounterMode)")
    left.set_ylabel(_axis_label("J per second of audio, batch 1", data, "energy_method"))
    left.legend(fontsize=7, ncol=2, loc="upper left")
    left.grid(True, which="both", alpha=0.3)

    y = np.arange(len(data))
    rel = data["relative_energy"].to_numpy()
    xerr = np.vstack([rel - data["relative_energy_low"].to_numpy(), data["relative_energy_high"].to_numpy() - rel])
    right.barh(y, rel, color=[colours[f] for f in data["family"]], xerr=np.clip(xerr, 0, None), capsize=2)
    right.set_yticks(y, data["model"], fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    right.axvline(1.0, color="k", lw=0.8)
    reference = str(data["reference"].iloc[0])
    right.set_xlabel(f"energy per second of audio ÷ {reference} (same run; shared estimate factors cancel)")
    right.grid(True, axis="x", which="both", alpha=0.3)
    title = "Vocoders on one machine, one protocol (random weights: cost only, not quality)"
    fig.suptitle(f"{title}\n{machine}" if machine else title, fontsize=9)
    fig.tight_layout()
    return fig, data
