"""Notebook 02: Table 1 recomputed, its kg CO2e by grid and PUE, and the Table 1 models measured
on this machine (:func:`plot_zoo_costs`).

The zoo figure's numbers come from :mod:`waveflow.experiments.zoo_energy` (implied fp32
utilisation, counted inference FLOPs, joules per second of audio); the models are architecture
replicas, not trained generators, and the figure's title says so. The utilisation panel grades
the reported hours in three bands (comfortable, demanding, implausible; the fp32 reference points
behind them are in :func:`waveflow.experiments.zoo_tables.verdict`) and shows the utilisation
under the other form factor of the GPU (PCIe or SXM2) where there is one, since the papers name
only the family. The energy panel's title says how its numbers were obtained.
"""

from __future__ import annotations

import re

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
    also under the other form factor's fp32 peak where there is one (``*_other_variant``), the
    counted inference GFLOP per audio second, and the J per audio second measured here at batch 1
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

    def add_other(r, quantity: str, method: str) -> None:
        u2 = getattr(r, "implied_utilisation_other_variant", np.nan)
        if isinstance(u2, float) and not np.isnan(u2):
            where = f"{method}, if {r.gpu_other_variant} ({r.fp32_peak_tflops_other_variant:g} TFLOP/s)"
            add(r.model, f"{quantity}_other_variant", u2, method=where)

    for r in table.itertuples(index=False):
        add(
            r.model,
            "implied_utilisation",
            r.implied_utilisation,
            method="counted FLOPs / (fp32 peak x hours)",
            verdict=getattr(r, "verdict", ""),
        )
        add(r.model, "implied_utilisation_naive", r.implied_utilisation_naive, method="steps x final-stage cost")
        add_other(r, "implied_utilisation", "counted FLOPs / (fp32 peak x hours)")
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
        for s in _staged(stages).itertuples(index=False):
            add(s.model, f"implied_utilisation_{s.stage}", s.implied_utilisation, method="per stage, paper's hours")
            add_other(s, f"implied_utilisation_{s.stage}", "per stage, paper's hours")
    frame = pd.DataFrame(rows)
    first = [c for c in ("model", "quantity", "value", "low", "high", "method", "note", "batch") if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]]  # the columns readers know come first


#: Short names of training stages for in-plot labels (SING's three stages).
_STAGE_ABBREVIATIONS = {"autoencoder": "AE", "sequence": "seq", "finetune": "FT"}

#: The utilisation panel's grades: colour and name of the band above each threshold.
_BANDS = (("tab:green", 0.12, "comfortable"), ("gold", 0.22, "demanding"), ("tab:red", 0.08, "implausible"))


def _staged(stages: pd.DataFrame) -> pd.DataFrame:
    """The rows of models trained in more than one stage (SING)."""
    return stages[stages.groupby("model").stage.transform("count") > 1]


def plot_zoo_costs(
    table: pd.DataFrame,
    stages: pd.DataFrame | None = None,
    bands: tuple[float, float, float] = (0.05, 0.5, 0.8),
    note: str = "architecture replicas for cost measurement, not trained generators",
) -> tuple[plt.Figure, pd.DataFrame]:
    """Three panels per Table 1 model: the fp32 utilisation the reported hours imply (shaded: the
    comfortable, demanding and implausible bands from ``bands`` = (low, comfortable, demanding)
    thresholds; a black tick: the same under the other form factor's peak), counted inference GFLOP
    per second of audio, and joules per second of audio on this machine (bars: batch 1, hatched when
    extrapolated; diamonds: the best batch of the sweep; whiskers: the meter's interval; the title
    says whether they were measured or estimated, and extrapolated from what). The figure's title
    says the models are replicas.

    Returns:
        ``(figure, tidy plotted numbers)``.
    """
    data = zoo_costs_figure_data(table, stages, note)
    models = list(table.model)
    x = np.arange(len(models))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.35, 1, 1]})

    _utilisation_panel(ax1, table, stages, models, x, bands)
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
    bands: tuple[float, float, float],
) -> None:
    """Left panel of :func:`plot_zoo_costs`: the fp32 utilisation the reported hours imply per model
    over the graded bands, the other form factor's utilisation as a black tick, steps x final-stage
    cost where it differs, and SING-like stages marked with their value (and the other form factor's)."""
    util = table.implied_utilisation.to_numpy(dtype=float) * 100
    naive = table.implied_utilisation_naive.to_numpy(dtype=float) * 100
    other = (
        table.implied_utilisation_other_variant.to_numpy(dtype=float) * 100
        if "implied_utilisation_other_variant" in table
        else np.full(len(table), np.nan)
    )
    top = max(100.0, np.nanmax(np.concatenate([naive, util, other, [0.0]])) * 1.05) * 1.45  # room for the legend
    edges = [100 * b for b in bands] + [top]
    for (color, alpha, name), lo, hi in zip(_BANDS, edges[:-1], edges[1:]):
        ax.axhspan(lo, hi, color=color, alpha=alpha, lw=0, label=f"{name} ({_band_range(lo, hi, top)})")
    ax.bar(x, np.nan_to_num(util), color=OURS_COLOR, width=0.6, label="schedule's counted FLOPs")
    has_other = ~np.isnan(other)
    if has_other.any():  # beside the bar, pointing at its level, clear of the stage ticks on the bar
        ax.scatter(
            x[has_other] - 0.38,
            other[has_other],
            marker=">",
            s=28,
            color="k",
            zorder=3,
            label="same under the other form factor's peak (PCIe ↔ SXM2)",
        )
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
        for k, s in enumerate(_staged(stages).itertuples(index=False)):
            i = models.index(s.model)
            label = "per training stage" if k == 0 else None
            u = 100 * s.implied_utilisation
            ax.scatter([i], [u], marker="_", s=200, color="tab:red", zorder=3, label=label)
            u2 = getattr(s, "implied_utilisation_other_variant", np.nan)
            regraded = isinstance(u2, float) and not np.isnan(u2) and _grade(u2, bands) != _grade(u / 100, bands)
            alt = f" ({s.form_factor_other_variant}: {u2:.0%})" if regraded else ""  # only where the grade moves
            ax.annotate(
                f"{_STAGE_ABBREVIATIONS.get(s.stage, s.stage)} {s.implied_utilisation:.0%}{alt}",
                (i, u),
                xytext=(13, 0),
                textcoords="offset points",
                va="center",
                fontsize=6.5,
                color="tab:red",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
    for i in np.flatnonzero(np.isnan(util)):
        ax.text(i, 2, "no steps\npublished", ha="center", va="bottom", fontsize=8, color="0.3")
    ax.set_ylabel("implied utilisation of fp32 peak (%)")
    ax.set_title("Paper's hours vs counted work", fontsize=10)
    ax.set_ylim(0, top)
    ax.legend(fontsize=6, loc="upper left", ncol=2)


def _grade(utilisation: float, bands: tuple[float, float, float]) -> int:
    """Index of the band a utilisation falls in (0: under the lowest threshold)."""
    return int(np.searchsorted(np.asarray(bands), utilisation, side="left"))


def _band_range(lo: float, hi: float, top: float) -> str:
    """``"5–50 %"``, or ``"> 80 %"`` for the open top band."""
    return f"> {lo:g} %" if hi >= top else f"{lo:g}–{hi:g} %"


def _inference_compute_panel(ax: plt.Axes, table: pd.DataFrame, x: np.ndarray) -> None:
    """Middle panel of :func:`plot_zoo_costs`: counted inference GFLOP per second of audio (log)."""
    ax.bar(x, table.inference_gflop_per_audio_s, color="0.55", width=0.6)
    ax.set_yscale("log")
    ax.set_ylabel("counted GFLOP per second of audio")
    ax.set_title("Inference compute (full-size replicas)", fontsize=10)


def energy_panel_title(labels: pd.Series) -> str:
    """The energy panel's title from its numbers' method labels: measured or estimated here, and
    what they were extrapolated from (``"extrapolated from a 0.0025 s clip (estimated:...)"`` gives
    ``"Inference energy estimated here,\nextrapolated from a 0.0025 s clip"``)."""
    labels = [str(lab) for lab in labels if isinstance(lab, str) and lab]
    if not labels:
        return "Inference energy on this machine: none measured"
    estimated = ["estimated:" in lab for lab in labels]
    kind = "estimated" if all(estimated) else "measured" if not any(estimated) else "measured and estimated"
    sources = sorted({m.group(1) for lab in labels if (m := re.match(r"extrapolated from (.+?) \(", lab))})
    if not sources:
        return f"Inference energy {kind} here"
    what = sources[0] if len(sources) == 1 else "short runs"
    every = all(lab.startswith("extrapolated") for lab in labels)
    return f"Inference energy {kind} here,\n{'' if every else 'hatched: '}extrapolated from {what}"


def _measured_energy_panel(ax: plt.Axes, table: pd.DataFrame, models: list[str]) -> None:
    """Right panel of :func:`plot_zoo_costs`: joules per second of audio on this machine, batch 1 as
    bars (hatched when extrapolated) and the sweep's best batch as diamonds, each with the meter's
    interval; models not measured are marked so. The title names the method (:func:`energy_panel_title`)."""
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
            # beside the bar, clear of the diamond and its whisker
            ax.annotate(
                f"b={int(b)}",
                (i + 0.3, v),
                xytext=(4, 0),
                textcoords="offset points",
                ha="left",
                va="center",
                fontsize=7,
            )
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
    labels = measured.j_per_audio_s_label if len(measured) else pd.Series(dtype=object)
    ax.set_title(energy_panel_title(labels), fontsize=10)
