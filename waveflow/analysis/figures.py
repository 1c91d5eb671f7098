"""Every figure of the notebooks: the survey (Fig. 1), Table 1, CO2 by grid, E_train and E_gen
measured next to the paper's, and the Pareto fronts (Fig. 2).

Plotting lives here and nowhere else, so the domains stay free of matplotlib: :mod:`~.survey`,
:mod:`~.pareto` and :mod:`waveflow.energy` compute the tables, and these functions draw them.
Functions taking ``ax`` draw into a given axes; the others return a figure, and each
``*_figure_data`` returns the tidy numbers behind it for :func:`~waveflow.analysis.save_figure`.

Labelling rules, kept by every energy plot: bars of extrapolated quantities are hatched; every
energy **axis** names how its numbers were obtained (not just a neighbouring panel); an estimated
energy is drawn with its interval as an error bar (low and high bound from the meter, carried
through extrapolation); and the paper's E_train is labelled a Carbontracker *prediction*, with its
PUE, not a measurement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from .pareto import normalized_hypervolume, pareto_table, reference_point
from .survey import COMPLEXITY, GROUP_COLORS, QUALITY

PAPER_COLOR = "0.35"
OURS_COLOR = "tab:blue"
#: How the paper's numbers were obtained, for legends and the figure CSVs (fidelity review D1, D9).
PAPER_E_TRAIN = "paper: Carbontracker prediction, 4 × TITAN V"
PAPER_E_TRAIN_METHOD = (
    "predicted by the authors with Carbontracker (whole training extrapolated from measured epochs; "
    "includes Carbontracker's PUE, about 1.6, version not stated)"
)
PAPER_E_GEN = "paper: 1 × TITAN V"
PAPER_E_GEN_METHOD = "reported by the authors (10 × 10 s on 1 × TITAN V; tool and PUE not stated)"


def _method_note(frame: pd.DataFrame, column: str = "energy_method") -> str:
    return "; ".join(sorted(set(frame[column].astype(str))))


def short_method(label: str) -> str:
    """``"extrapolated from 2 steps (estimated:tdp×utilisation)"`` -> ``"extrapolated, estimated:tdp×utilisation"``."""
    return re.sub(r" from [^(]*\(", ", ", label).rstrip(")")


def _axis_label(base: str, frame: pd.DataFrame, column: str) -> str:
    """An energy axis label that names the method(s) of the numbers on it."""
    methods = "; ".join(sorted({short_method(str(m)) for m in frame[column]}))
    return f"{base}\n[{methods}]"


def _yerr(frame: pd.DataFrame, value: str, stem: str | None = None) -> np.ndarray | None:
    """Asymmetric error bars ``[[value - low], [high - value]]`` from ``{stem}_low``/``_high``, or None
    when the frame has no bounds or they equal the value (a measurement has no modelled interval)."""
    stem = stem or value
    low, high = f"{stem}_low", f"{stem}_high"
    if low not in frame or high not in frame:
        return None
    v = frame[value].to_numpy(dtype=float)
    err = np.vstack([v - frame[low].to_numpy(dtype=float), frame[high].to_numpy(dtype=float) - v])
    return err if np.nanmax(np.abs(err)) > 0 else None


def _log_floor(ax, *columns) -> None:
    """On a log axis, start below the smallest bar or low bound, so no bar is cut by the axis."""
    values = np.concatenate([np.asarray(c, dtype=float).ravel() for c in columns])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        ax.set_ylim(bottom=float(values.min()) / 2)


def _pue_note(frame: pd.DataFrame) -> str:
    pues = sorted({float(p) for p in frame["pue"]}) if "pue" in frame else []
    return f"PUE {', '.join(f'{p:g}' for p in pues)}" if pues else "PUE not stated"


def _bounds(row, value: str, stem: str | None = None) -> tuple[float, float]:
    stem = stem or value
    return getattr(row, f"{stem}_low", getattr(row, value)), getattr(row, f"{stem}_high", getattr(row, value))


def _tidy(
    config: str, quantity: str, value: float, low: float, high: float, source: str, method: str, **extra: object
) -> dict[str, object]:
    """One plotted number: the columns every figure CSV shares, then any extra ones."""
    row = {"config": config, "quantity": quantity, "value": value, "low": low, "high": high}
    return {**row, "source": source, "method": method, **extra}


def _ours(
    r, quantity: str, column: str, source: str, method: str, stem: str | None = None, **extra: object
) -> dict[str, object]:
    """Our number in ``column`` of result row ``r``, with the estimate's bounds (``<stem>_low/_high``)."""
    return _tidy(r.config, quantity, getattr(r, column), *_bounds(r, column, stem), source, method, **extra)


def _paper(config: str, quantity: str, value: float, source: str, method: str, **extra: object) -> dict[str, object]:
    """The paper's number: no modelled interval, so low = high = value."""
    return _tidy(config, quantity, value, value, value, source, method, **extra)


def training_figure_data(training: pd.DataFrame, table2: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows: per config, J per training example (ours) and E_train (ours extrapolated, paper's),
    each with its low/high bound (equal to the value where no interval is modelled) and method."""
    paper = table2.set_index("model")["e_train_kwh"]
    rows = []
    for r in training.itertuples():
        rows.append(_ours(r, "j_per_example", "j_per_example", "this machine", r.energy_method))
        rows.append(
            _ours(
                r,
                "e_train_kwh",
                "e_train_kwh_extrapolated",
                "this machine, extrapolated",
                r.e_train_label,
                stem="e_train_kwh",
            )
        )
        if r.config in paper.index:
            rows.append(_paper(r.config, "e_train_kwh", float(paper[r.config]), PAPER_E_TRAIN, PAPER_E_TRAIN_METHOD))
    return pd.DataFrame(rows)


def _ours_vs_paper(
    ax: plt.Axes,
    ours: pd.DataFrame,
    column: str,
    paper: pd.Series,
    *,
    ours_label: str,
    paper_label: str,
    bounds: str,
    hatch: bool,
) -> None:
    """Our value per config (hatched when extrapolated, with the estimate's interval as an error bar)
    beside the paper's, on a log axis with room for the legend above the bars."""
    x = list(range(len(ours)))
    width = 0.4
    ours_x = [i - width / 2 for i in x]
    ax.bar(
        ours_x,
        ours[column],
        width,
        color=OURS_COLOR,
        hatch="//" if hatch else None,
        edgecolor="white",
        label=ours_label,
    )
    err = _yerr(ours, column, bounds)
    if err is not None:
        ax.errorbar(
            ours_x,
            ours[column],
            yerr=err,
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
            label="interval of the estimate (low, high)",
        )
    paper_values = [paper.get(c, float("nan")) for c in ours.config]
    ax.bar([i + width / 2 for i in x], paper_values, width, color=PAPER_COLOR, label=paper_label)
    ax.set_xticks(x, ours.config)
    ax.set_yscale("log")
    lows = ours[column] - (err[0] if err is not None else 0)
    _log_floor(ax, ours[column], lows, paper_values)
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # room for the legend above the bars


def plot_training_energy(training: pd.DataFrame, table2: pd.DataFrame) -> plt.Figure:
    """Left: J per training example; right: extrapolated E_train vs the paper's prediction (log scale).

    Our estimated numbers carry their interval as error bars; both axes name the method.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    x = list(range(len(training)))
    ax1.bar(x, training.j_per_example, color=OURS_COLOR)
    err = _yerr(training, "j_per_example")
    if err is not None:
        ax1.errorbar(x, training.j_per_example, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
        ax1.set_yscale("log")
        _log_floor(ax1, training.j_per_example, training.j_per_example - err[0])
    ax1.set_xticks(x, training.config)
    ax1.set_ylabel(_axis_label("J per training example", training, "energy_method"), fontsize=8)
    note = "; error bars: interval of the estimate" if err is not None else ""
    ax1.set_title(f"this machine ({_pue_note(training)}){note}", fontsize=9)
    _ours_vs_paper(
        ax2,
        training,
        "e_train_kwh_extrapolated",
        table2.set_index("model")["e_train_kwh"],
        ours_label=f"this machine, extrapolated to the paper's schedule ({_pue_note(training)})",
        paper_label=f"{PAPER_E_TRAIN} (Carbontracker's PUE included)",
        bounds="e_train_kwh",
        hatch=True,
    )
    ax2.set_ylabel(_axis_label("E_train (kWh)", training, "e_train_label"), fontsize=8)
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def inference_figure_data(
    inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Tidy rows: per config E_gen (ours and paper's), J per GFLOP, and the batch sweep if given; each
    with low/high bounds and method."""
    paper = table2.set_index("model")["e_gen_wh"]
    rows = []
    for r in inference.itertuples():
        b = r.batch_size
        rows.append(_ours(r, "e_gen_wh", "e_gen_wh", "this machine", r.e_gen_label, batch_size=b))
        rows.append(_ours(r, "j_per_gflop", "j_per_gflop", "this machine", r.energy_method, batch_size=b))
        if r.config in paper.index:
            rows.append(
                _paper(r.config, "e_gen_wh", float(paper[r.config]), PAPER_E_GEN, PAPER_E_GEN_METHOD, batch_size=None)
            )
    for r in sweep.itertuples() if sweep is not None else ():
        rows.append(
            _ours(
                r,
                "sweep_j_per_audio_s",
                "j_per_audio_s",
                "this machine",
                r.energy_method,
                batch_size=r.batch_size,
                within_noise=getattr(r, "within_noise", None),
            )
        )
    return pd.DataFrame(rows)


def plot_inference_energy(
    inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None, noise: float = 0.10
) -> plt.Figure:
    """E_gen (ours vs paper, log), J per GFLOP, and energy per audio second vs synthesis batch size.

    Estimated numbers carry their interval as error bars, every energy axis names its method, and the
    sweep marks every batch size within ``noise`` (relative) of the lowest: those are not told apart.
    """
    panels = 3 if sweep is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    ax1, ax2 = axes[0], axes[1]
    x = list(range(len(inference)))
    extrapolated = inference.e_gen_label.str.startswith("extrapolated").any()
    _ours_vs_paper(
        ax1,
        inference,
        "e_gen_wh",
        table2.set_index("model")["e_gen_wh"],
        ours_label=f"this machine{', extrapolated to 100 s' if extrapolated else ''} ({_pue_note(inference)})",
        paper_label=f"{PAPER_E_GEN} (tool and PUE not stated)",
        bounds="e_gen_wh",
        hatch=bool(extrapolated),
    )
    ax1.set_ylabel(_axis_label("E_gen (Wh per 100 s of audio)", inference, "e_gen_label"), fontsize=8)
    ax1.legend(fontsize=7, loc="upper left")
    ax2.bar(x, inference.j_per_gflop, color=OURS_COLOR)
    err = _yerr(inference, "j_per_gflop")
    if err is not None:
        ax2.errorbar(x, inference.j_per_gflop, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
        ax2.set_yscale("log")
        _log_floor(ax2, inference.j_per_gflop, inference.j_per_gflop - err[0])
    ax2.set_xticks(x, inference.config)
    ax2.set_ylabel(_axis_label("J per GFLOP (synthesis)", inference, "energy_method"), fontsize=8)
    ax2.set_title(f"this machine ({_pue_note(inference)})", fontsize=9)
    if sweep is not None:
        _plot_sweep(axes[2], sweep, noise)
    fig.tight_layout()
    return fig


def _plot_sweep(ax, sweep: pd.DataFrame, noise: float) -> None:
    """Energy per audio second against batch size, the lowest starred, the noise band shaded."""
    ax.plot(sweep.batch_size, sweep.j_per_audio_s, "o-", color=OURS_COLOR)
    err = _yerr(sweep, "j_per_audio_s")
    if err is not None:
        ax.errorbar(sweep.batch_size, sweep.j_per_audio_s, yerr=err, fmt="none", ecolor="0.5", capsize=3, lw=1)
    best = sweep.loc[sweep.j_per_audio_s.idxmin()]
    lowest = float(best.j_per_audio_s)
    ax.axhspan(lowest, lowest * (1 + noise), color="tab:red", alpha=0.12, lw=0)
    close = sorted(int(b) for b, j in zip(sweep.batch_size, sweep.j_per_audio_s) if j <= lowest * (1 + noise))
    others = [b for b in close if b != int(best.batch_size)]
    verdict = f"; within the {noise:.0%} noise: {', '.join(map(str, others))}" if others else ""
    ax.plot(
        [best.batch_size],
        [lowest],
        "*",
        color="tab:red",
        markersize=14,
        label=f"lowest: batch {int(best.batch_size)}{verdict}",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"synthesis batch size ({sweep.config.iloc[0]})")
    ax.set_ylabel(_axis_label("J per second of audio", sweep, "energy_method"), fontsize=8)
    top = float(sweep.j_per_audio_s.max()) * 1.4
    ax.set_ylim(0, top)  # differences are read against zero, not magnified
    if err is not None and float((sweep.j_per_audio_s + err[1]).max()) > top:
        ax.text(
            0.02,
            0.97,
            "error bars: interval of the estimate, common to every batch size (clipped)",
            transform=ax.transAxes,
            fontsize=7,
            va="top",
            color="0.35",
        )
    ax.legend(fontsize=7, loc="lower right")


# ------------------------------------------------------------------------------------------
# notebook 01: the survey (Fig. 1)
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


# ------------------------------------------------------------------------------------------
# notebook 02: Table 1 and CO2
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


# ------------------------------------------------------------------------------------------
# notebook 05: Pareto fronts (Fig. 2)
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
# Table 1 models on this machine (notebook 02, second figure)
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

    ax1.axhspan(100 * plausible[0], 100 * plausible[1], color="tab:green", alpha=0.12, lw=0, label="plausible band")
    util = table.implied_utilisation.to_numpy(dtype=float) * 100
    ax1.bar(x, np.nan_to_num(util), color=OURS_COLOR, width=0.6, label="schedule's counted FLOPs")
    naive = table.implied_utilisation_naive.to_numpy(dtype=float) * 100
    differs = ~np.isclose(naive, util) & ~np.isnan(naive)
    if differs.any():
        ax1.scatter(
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
            ax1.scatter([i], [100 * s.implied_utilisation], marker="_", s=200, color="tab:red", zorder=3, label=label)
            ax1.annotate(
                _STAGE_ABBREVIATIONS.get(s.stage, s.stage),
                (i, 100 * s.implied_utilisation),
                xytext=(20, -3),
                textcoords="offset points",
                fontsize=7,
                color="tab:red",
            )
    for i in np.flatnonzero(np.isnan(util)):
        ax1.text(i, 2, "no steps\npublished", ha="center", va="bottom", fontsize=8, color="0.3")
    ax1.set_ylabel("fp32 peak implied by reported hours (%)")
    ax1.set_title("Paper's hours vs counted work", fontsize=10)
    ax1.set_ylim(0, max(100.0, np.nanmax(np.append(naive, util)) * 1.05) * 1.2)  # room for the legend
    ax1.legend(fontsize=6.5, loc="upper left", ncol=2)

    ax2.bar(x, table.inference_gflop_per_audio_s, color="0.55", width=0.6)
    ax2.set_yscale("log")
    ax2.set_ylabel("counted GFLOP per second of audio")
    ax2.set_title("Inference compute (full-size replicas)", fontsize=10)

    measured = table[table.get("measured_here", pd.Series(False, index=table.index)).astype(bool)]
    if len(measured):
        idx = [models.index(m) for m in measured.model]
        hatch = ["//" if str(lab).startswith("extrapolated") else None for lab in measured.j_per_audio_s_label]
        bars = ax3.bar(
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
        ax3.errorbar(
            idx, best.j, yerr=_yerr(best, "j"), fmt="D", color="k", ms=5, capsize=3, label="best batch of the sweep"
        )
        for i, b, v in zip(idx, measured.best_batch, measured.j_per_audio_s_best):
            ax3.annotate(f"b={int(b)}", (i, v), xytext=(6, 0), textcoords="offset points", fontsize=7)
        ax3.set_yscale("log")
        ax3.set_ylabel(_axis_label("J per second of audio, this machine", measured, "j_per_audio_s_label"), fontsize=8)
        ax3.legend(fontsize=7)
    for i in [i for i, m in enumerate(models) if m not in set(measured.model)]:
        ax3.text(
            i,
            0.5,
            "not\nmeasured",
            ha="center",
            va="center",
            fontsize=8,
            color="0.3",
            transform=ax3.get_xaxis_transform(),
        )
    ax3.set_title("Inference energy measured here", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(x, models, rotation=20)
        ax.set_xlim(-0.6, len(models) - 0.4)
    fig.suptitle(f"Table 1 models: {note}", fontsize=11)
    fig.tight_layout()
    return fig, data


# ------------------------------------------------------------------------------------------------
# energy to quality (notebook 06)
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


def plot_measured_pareto(table: pd.DataFrame, title_note: str = "") -> plt.Figure:
    """Notebook 05 on our measurements: held-out NLL at the common training budget of notebook 06
    against the training energy spent (the budget) and against E_gen measured in notebook 04.

    ``table`` has one row per configuration with ``config, heldout_nll_bits, energy_j(_low/_high),
    energy_method, e_gen_wh(_low/_high), e_gen_wh_kind``. Optimal points are blue, dominated red; an
    estimated energy has its low/high bound as a horizontal error bar. Titles and axes are in words,
    tick labels are few and plain, and point labels are stacked so none overlap.
    """
    from .pareto import pareto_table

    spaces = {
        "training": ("energy_j", "energy_method", "training energy spent (J; the common budget of notebook 06)"),
        "generation": ("e_gen_wh", "e_gen_wh_kind", "energy to generate 100 s of audio (Wh, notebook 04)"),
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (space, (x, method, words)) in zip(axes, spaces.items()):
        t = pareto_table(table, ["heldout_nll_bits", x], "config")
        for optimal, color, name in ((True, "tab:blue", "Pareto optimal"), (False, "tab:red", "dominated")):
            part = t[t.pareto_optimal == optimal]
            if len(part):
                ax.scatter(part[x], part.heldout_nll_bits, color=color, s=40, zorder=3, label=name)
        low, high = f"{x}_low", f"{x}_high"
        bounded = {low, high} <= set(table.columns) and bool(table[low].notna().all())
        if bounded:
            v = table[x].to_numpy(dtype=float)
            xerr = np.vstack([v - table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float) - v])
            ax.errorbar(v, table.heldout_nll_bits, xerr=xerr, fmt="none", ecolor="0.6", capsize=3, lw=1, zorder=2)
        # log when the numbers or their bounds span a factor of 3 or more (an estimate's bound often does)
        span = table[[x, high]] if bounded else table[[x]]
        log = space == "generation" or bounded or float(span.max().max()) > 3 * float(table[x].min())
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(_axis_label(words, table, method), fontsize=9)
        ax.set_ylabel("held-out NLL at the common budget\n(bits per sample; lower is better)", fontsize=9)
        dominated = ", ".join(t.loc[~t.pareto_optimal, "config"].astype(str)) or "none"
        what = "training energy" if space == "training" else "generation energy"
        ax.set_title(f"Quality against {what}: dominated {dominated}", fontsize=10)
        ax.margins(x=0.15, y=0.2)
        _sparse_ticks(ax, "x", log)
        _sparse_ticks(ax, "y", False)
    axes[0].legend(fontsize=8, loc="best")
    if title_note:
        fig.suptitle(title_note, fontsize=10)
    fig.tight_layout()
    # Labels last: their offsets are computed in display space, which the layout above has fixed.
    for ax, (x, _, _) in zip(axes, spaces.values()):
        _dodged_labels(ax, table[x].to_numpy(dtype=float), table.heldout_nll_bits.to_numpy(dtype=float), table.config)
    return fig
