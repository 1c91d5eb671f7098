"""Notebook 02: Table 1 recomputed, its kg CO2e by grid and PUE, and the Table 1 models measured
on this machine (:func:`plot_zoo_costs`).

The zoo figure's numbers come from :mod:`waveflow.experiments.zoo_energy` (implied fp32
utilisation, counted inference FLOPs, joules per second of audio); the models are architecture
replicas, not trained generators, and the figure's title says so.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .common import OURS_COLOR, _axis_label, _yerr


# ------------------------------------------------------------------------------------------
# Table 1 and CO2
def plot_table1(ax, table1: pd.DataFrame) -> None:
    """Table 1 as bars (our recomputation) with the paper's printed values as black ticks."""
    x = range(len(table1))
    ax.bar(x, table1["energy_kwh"], color="tab:gray", label="recomputed")
    ax.scatter(x, table1["energy_kwh_paper"], marker="_", s=400, color="black", zorder=3, label="paper")
    for i, (kwh, hw) in enumerate(zip(table1["energy_kwh"], table1["hardware"])):
        ax.annotate(f"{kwh:g}\n{hw}", (i, kwh), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax.set_xticks(list(x))
    ax.set_xticklabels(table1["model"], rotation=30)
    ax.set_ylabel("training energy (kWh)")
    ax.set_ylim(0, float(table1["energy_kwh"].max()) * 1.3)
    ax.legend(loc="upper right", fontsize=8)


def plot_co2e_by_grid(ax, co2: pd.DataFrame) -> pd.DataFrame:
    """Bars of the summed kg CO2e of a :func:`co2e_table` per grid, one bar per PUE.

    Returns:
        The plotted totals (one row per intensity × PUE), for ``save_figure``.
    """
    totals = co2.groupby(["intensity", "g_per_kwh", "pue_name", "pue"], sort=False, as_index=False)["kg_co2e"].sum()
    sns.barplot(data=totals, x="intensity", y="kg_co2e", hue="pue_name", ax=ax)
    ax.set_xlabel("grid (country average)")
    ax.legend(title="PUE", fontsize=8)
    return totals


# ------------------------------------------------------------------------------------------------
# Table 1 models on this machine (the second figure)
def zoo_costs_figure_data(table: pd.DataFrame, stages: pd.DataFrame | None = None, note: str = "") -> pd.DataFrame:
    """Tidy rows behind :func:`plot_zoo_costs`: per model the implied utilisation (and SING's stages),
    the counted inference GFLOP per audio second, and the J per audio second measured here at batch 1
    and at the best batch, each with its low/high bound and how it was obtained."""
    rows = []

    def add(model, quantity, value, low=None, high=None, method="", **extra):
        low = value if low is None else low
        high = value if high is None else high
        rows.append(
            {"model": model, "quantity": quantity, "value": value, "low": low, "high": high, "method": method}
            | extra
            | {"note": note}
        )

    for r in table.itertuples(index=False):
        add(r.model, "implied_utilisation", r.implied_utilisation, method="counted FLOPs / (fp32 peak x hours)")
        add(r.model, "implied_utilisation_naive", r.implied_utilisation_naive, method="steps x final-stage cost")
        add(r.model, "inference_gflop_per_audio_s", r.inference_gflop_per_audio_s, method="counted (FlopCounterMode)")
        if getattr(r, "measured_here", False):
            label = str(r.j_per_audio_s_label)
            add(r.model, "j_per_audio_s_batch1", r.j_per_audio_s, r.j_per_audio_s_low, r.j_per_audio_s_high, label)
            add(
                r.model,
                "j_per_audio_s_best_batch",
                r.j_per_audio_s_best,
                r.j_per_audio_s_low_best,
                r.j_per_audio_s_high_best,
                label,
                batch=r.best_batch,
            )
    if stages is not None:
        for s in stages[stages.groupby("model").stage.transform("count") > 1].itertuples(index=False):
            add(s.model, f"implied_utilisation_{s.stage}", s.implied_utilisation, method="per stage, paper's hours")
    return pd.DataFrame(rows)


#: Short names of training stages for in-plot labels (SING's three stages).
_STAGE_ABBREVIATIONS = {"autoencoder": "AE", "sequence": "seq", "finetune": "FT"}


def plot_zoo_costs(
    table: pd.DataFrame,
    stages: pd.DataFrame | None = None,
    plausible: tuple[float, float] = (0.05, 0.5),
    note: str = "architecture replicas for cost measurement, not trained generators",
) -> tuple[plt.Figure, pd.DataFrame]:
    """Three panels per Table 1 model: the fp32 utilisation the reported hours imply (shaded: the
    plausible band), counted inference GFLOP per second of audio, and joules per second of audio
    measured on this machine (bars: batch 1, hatched when extrapolated; diamonds: the best batch of
    the sweep; whiskers: the meter's interval). The title says the models are replicas.

    Returns:
        ``(figure, tidy plotted numbers)``.
    """
    data = zoo_costs_figure_data(table, stages, note)
    models = list(table.model)
    x = np.arange(len(models))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4))

    _utilisation_panel(ax1, table, stages, models, x, plausible)
    _inference_compute_panel(ax2, table, x)
    _measured_energy_panel(ax3, table, models)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(x, models, rotation=20)
        ax.set_xlim(-0.6, len(models) - 0.4)
    fig.suptitle(f"Table 1 models: {note}", fontsize=11)
    fig.tight_layout()
    return fig, data


def _utilisation_panel(
    ax: plt.Axes,
    table: pd.DataFrame,
    stages: pd.DataFrame | None,
    models: list[str],
    x: np.ndarray,
    plausible: tuple[float, float],
) -> None:
    """Left panel of :func:`plot_zoo_costs`: the fp32 utilisation the reported hours imply per model,
    the plausible band shaded, steps x final-stage cost where it differs, and SING-like stages marked."""
    ax.axhspan(100 * plausible[0], 100 * plausible[1], color="tab:green", alpha=0.12, lw=0, label="plausible band")
    util = table.implied_utilisation.to_numpy(dtype=float) * 100
    ax.bar(x, np.nan_to_num(util), color=OURS_COLOR, width=0.6, label="schedule's counted FLOPs")
    naive = table.implied_utilisation_naive.to_numpy(dtype=float) * 100
    differs = ~np.isclose(naive, util) & ~np.isnan(naive)
    if differs.any():
        ax.scatter(
            x[differs],
            naive[differs],
            marker="o",
            facecolor="none",
            edgecolor="k",
            zorder=3,
            label="steps x final-stage cost",
        )
    if stages is not None:
        multi = stages[stages.groupby("model").stage.transform("count") > 1]
        for k, s in enumerate(multi.itertuples(index=False)):
            i = models.index(s.model)
            label = "per training stage" if k == 0 else None
            ax.scatter([i], [100 * s.implied_utilisation], marker="_", s=200, color="tab:red", zorder=3, label=label)
            ax.annotate(
                _STAGE_ABBREVIATIONS.get(s.stage, s.stage),
                (i, 100 * s.implied_utilisation),
                xytext=(20, -3),
                textcoords="offset points",
                fontsize=7,
                color="tab:red",
            )
    for i in np.flatnonzero(np.isnan(util)):
        ax.text(i, 2, "no steps\npublished", ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set_ylabel("fp32 peak implied by reported hours (%)")
    ax.set_title("Paper's hours vs counted work", fontsize=10)
    ax.set_ylim(0, max(100.0, np.nanmax(np.append(naive, util)) * 1.05) * 1.2)  # room for the legend
    ax.legend(fontsize=6.5, loc="upper left", ncol=2)


def _inference_compute_panel(ax: plt.Axes, table: pd.DataFrame, x: np.ndarray) -> None:
    """Middle panel of :func:`plot_zoo_costs`: counted inference GFLOP per second of audio (log)."""
    ax.bar(x, table.inference_gflop_per_audio_s, color="0.55", width=0.6)
    ax.set_yscale("log")
    ax.set_ylabel("counted GFLOP per second of audio")
    ax.set_title("Inference compute (full-size replicas)", fontsize=10)


def _measured_energy_panel(ax: plt.Axes, table: pd.DataFrame, models: list[str]) -> None:
    """Right panel of :func:`plot_zoo_costs`: joules per second of audio measured here, batch 1 as bars
    (hatched when extrapolated) and the sweep's best batch as diamonds, each with the meter's interval;
    models not measured are marked so."""
    measured = table[table.get("measured_here", pd.Series(False, index=table.index)).astype(bool)]
    if len(measured):
        idx = [models.index(m) for m in measured.model]
        hatch = ["//" if str(lab).startswith("extrapolated") else None for lab in measured.j_per_audio_s_label]
        bars = ax.bar(
            idx,
            measured.j_per_audio_s,
            color=OURS_COLOR,
            width=0.6,
            edgecolor="white",
            yerr=_yerr(measured, "j_per_audio_s"),
            capsize=3,
            label="batch 1",
        )
        for bar, h in zip(bars, hatch):
            bar.set_hatch(h)
        best = pd.DataFrame(
            {
                "j": measured.j_per_audio_s_best.to_numpy(dtype=float),
                "j_low": measured.j_per_audio_s_low_best.to_numpy(dtype=float),
                "j_high": measured.j_per_audio_s_high_best.to_numpy(dtype=float),
            }
        )
        ax.errorbar(
            idx, best.j, yerr=_yerr(best, "j"), fmt="D", color="k", ms=5, capsize=3, label="best batch of the sweep"
        )
        for i, b, v in zip(idx, measured.best_batch, measured.j_per_audio_s_best):
            ax.annotate(f"b={int(b)}", (i, v), xytext=(6, 0), textcoords="offset points", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(_axis_label("J per second of audio, this machine", measured, "j_per_audio_s_label"), fontsize=8)
        ax.legend(fontsize=7)
    for i in [i for i, m in enumerate(models) if m not in set(measured.model)]:
        ax.text(
            i,
            0.5,
            "not\nmeasured",
            ha="center",
            va="center",
            fontsize=8,
            color="0.3",
            transform=ax.get_xaxis_transform(),
        )
    ax.set_title("Inference energy measured here", fontsize=10)
