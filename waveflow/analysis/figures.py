"""Every figure of the notebooks: the survey (Fig. 1), Table 1, CO2 by grid, E_train and E_gen
measured next to the paper's, and the Pareto fronts (Fig. 2).

Plotting lives here and nowhere else, so the domains stay free of matplotlib: :mod:`~.survey`,
:mod:`~.pareto` and :mod:`waveflow.energy` compute the tables, and these functions draw them.
Functions taking ``ax`` draw into a given axes; the others return a figure, and each
``*_figure_data`` returns the tidy numbers behind it for :func:`~waveflow.analysis.save_figure`.
Bars of extrapolated quantities are hatched and every energy axis names how the numbers were obtained.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from .pareto import normalized_hypervolume, pareto_table, reference_point
from .survey import COMPLEXITY, GROUP_COLORS, QUALITY

PAPER_COLOR = "0.35"
OURS_COLOR = "tab:blue"


def _method_note(frame: pd.DataFrame, column: str = "energy_method") -> str:
    return "; ".join(sorted(set(frame[column].astype(str))))


def training_figure_data(training: pd.DataFrame, table2: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows: per config, J per training example (ours) and E_train (ours extrapolated, paper's)."""
    paper = table2.set_index("model")["e_train_kwh"]
    rows = []
    for r in training.itertuples():
        rows.append(
            {
                "config": r.config,
                "quantity": "j_per_example",
                "value": r.j_per_example,
                "source": "this machine",
                "method": r.energy_method,
            }
        )
        rows.append(
            {
                "config": r.config,
                "quantity": "e_train_kwh",
                "value": r.e_train_kwh_extrapolated,
                "source": "this machine, extrapolated",
                "method": r.e_train_label,
            }
        )
        if r.config in paper.index:
            rows.append(
                {
                    "config": r.config,
                    "quantity": "e_train_kwh",
                    "value": float(paper[r.config]),
                    "source": "paper (Carbontracker, 4 x TITAN V)",
                    "method": "measured by the authors",
                }
            )
    return pd.DataFrame(rows)


def plot_training_energy(training: pd.DataFrame, table2: pd.DataFrame) -> plt.Figure:
    """Left: J per training example; right: extrapolated E_train vs the paper's (log scale)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = range(len(training))
    ax1.bar(x, training.j_per_example, color=OURS_COLOR)
    ax1.set_xticks(list(x), training.config)
    ax1.set_ylabel("J per training example")
    ax1.set_title(f"this machine: {_method_note(training)}", fontsize=9)
    paper = table2.set_index("model")["e_train_kwh"]
    width = 0.4
    ax2.bar(
        [i - width / 2 for i in x],
        training.e_train_kwh_extrapolated,
        width,
        color=OURS_COLOR,
        hatch="//",
        edgecolor="white",
        label="this machine, extrapolated to the paper's schedule",
    )
    ax2.bar(
        [i + width / 2 for i in x],
        [paper.get(c, float("nan")) for c in training.config],
        width,
        color=PAPER_COLOR,
        label="paper (Carbontracker, 4 × TITAN V)",
    )
    ax2.set_xticks(list(x), training.config)
    ax2.set_yscale("log")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 10)  # room for the legend above the bars
    ax2.set_ylabel("E_train (kWh)")
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def inference_figure_data(
    inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Tidy rows: per config E_gen (ours and paper's), J per GFLOP, and the batch sweep if given."""
    paper = table2.set_index("model")["e_gen_wh"]
    rows = []
    for r in inference.itertuples():
        rows.append(
            {
                "config": r.config,
                "quantity": "e_gen_wh",
                "value": r.e_gen_wh,
                "source": "this machine",
                "method": r.e_gen_label,
                "batch_size": r.batch_size,
            }
        )
        rows.append(
            {
                "config": r.config,
                "quantity": "j_per_gflop",
                "value": r.j_per_gflop,
                "source": "this machine",
                "method": r.energy_method,
                "batch_size": r.batch_size,
            }
        )
        if r.config in paper.index:
            rows.append(
                {
                    "config": r.config,
                    "quantity": "e_gen_wh",
                    "value": float(paper[r.config]),
                    "source": "paper (1 × TITAN V)",
                    "method": "measured by the authors",
                    "batch_size": None,
                }
            )
    if sweep is not None:
        for r in sweep.itertuples():
            rows.append(
                {
                    "config": r.config,
                    "quantity": "sweep_j_per_audio_s",
                    "value": r.j_per_audio_s,
                    "source": "this machine",
                    "method": r.energy_method,
                    "batch_size": r.batch_size,
                }
            )
    return pd.DataFrame(rows)


def plot_inference_energy(
    inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None
) -> plt.Figure:
    """E_gen (ours vs paper, log), J per GFLOP, and energy per audio second vs synthesis batch size."""
    panels = 3 if sweep is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    ax1, ax2 = axes[0], axes[1]
    x = list(range(len(inference)))
    paper = table2.set_index("model")["e_gen_wh"]
    width = 0.4
    extrapolated = inference.e_gen_label.str.startswith("extrapolated").any()
    ax1.bar(
        [i - width / 2 for i in x],
        inference.e_gen_wh,
        width,
        color=OURS_COLOR,
        hatch="//" if extrapolated else None,
        edgecolor="white",
        label="this machine" + (", extrapolated to 100 s" if extrapolated else ""),
    )
    ax1.bar(
        [i + width / 2 for i in x],
        [paper.get(c, float("nan")) for c in inference.config],
        width,
        color=PAPER_COLOR,
        label="paper (1 × TITAN V)",
    )
    ax1.set_xticks(x, inference.config)
    ax1.set_yscale("log")
    ax1.set_ylim(top=ax1.get_ylim()[1] * 10)
    ax1.set_ylabel("E_gen (Wh per 100 s of audio)")
    ax1.legend(fontsize=8, loc="upper left")
    ax2.bar(x, inference.j_per_gflop, color=OURS_COLOR)
    ax2.set_xticks(x, inference.config)
    ax2.set_ylabel("J per GFLOP (synthesis)")
    ax2.set_title(_method_note(inference), fontsize=9)
    if sweep is not None:
        ax3 = axes[2]
        ax3.plot(sweep.batch_size, sweep.j_per_audio_s, "o-", color=OURS_COLOR)
        best = sweep[sweep.optimal].iloc[0]
        ax3.plot(
            [best.batch_size],
            [best.j_per_audio_s],
            "*",
            color="tab:red",
            markersize=14,
            label=f"lowest: batch {int(best.batch_size)}",
        )
        ax3.set_xscale("log", base=2)
        ax3.set_xlabel(f"synthesis batch size ({sweep.config.iloc[0]})")
        ax3.set_ylabel("J per second of audio")
        ax3.set_ylim(bottom=0)  # differences are read against zero, not magnified
        ax3.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
):
    """One panel per 2-objective space: quality (first objective) on y against energy on x, optimal
    points blue and dominated red, the front's hypervolume shaded and printed.

    Returns:
        The matplotlib figure.
    """
    axis_labels = axis_labels or {}
    nrows = -(-len(spaces) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (space, objectives) in zip(axes.flat, spaces.items()):
        if len(objectives) != 2:
            raise ValueError(f"plot_pareto_spaces: space {space!r} has {len(objectives)} objectives; expected 2")
        q, e = objectives
        t = pareto_table(df, [q, e], label)
        ref = reference_point(t[[e, q]].to_numpy(dtype=float), margin)
        plot_front(ax, t, x=e, y=q, label=label, hv_reference=ref)
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
