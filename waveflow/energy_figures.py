"""Figures of notebooks 03 and 04: measured energy next to the paper's, with methods on the plot.

Each ``plot_*`` returns a figure and each ``*_figure_data`` the tidy numbers behind it, which the
notebooks pass to :func:`waveflow.plotting.save_figure`. Bars of extrapolated quantities are
hatched and every energy axis names how the numbers were obtained.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

PAPER_COLOR = "0.35"
OURS_COLOR = "tab:blue"


def _method_note(frame: pd.DataFrame, column: str = "energy_method") -> str:
    return "; ".join(sorted(set(frame[column].astype(str))))


def training_figure_data(training: pd.DataFrame, table2: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows: per config, J per training example (ours) and E_train (ours extrapolated, paper's)."""
    paper = table2.set_index("model")["e_train_kwh"]
    rows = []
    for r in training.itertuples():
        rows.append({"config": r.config, "quantity": "j_per_example", "value": r.j_per_example, "source": "this machine",
                     "method": r.energy_method})
        rows.append({"config": r.config, "quantity": "e_train_kwh", "value": r.e_train_kwh_extrapolated,
                     "source": "this machine, extrapolated", "method": r.e_train_label})
        if r.config in paper.index:
            rows.append({"config": r.config, "quantity": "e_train_kwh", "value": float(paper[r.config]),
                         "source": "paper (Carbontracker, 4 x TITAN V)", "method": "measured by the authors"})
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
    ax2.bar([i - width / 2 for i in x], training.e_train_kwh_extrapolated, width, color=OURS_COLOR, hatch="//",
            edgecolor="white", label="this machine, extrapolated to the paper's schedule")
    ax2.bar([i + width / 2 for i in x], [paper.get(c, float("nan")) for c in training.config], width,
            color=PAPER_COLOR, label="paper (Carbontracker, 4 × TITAN V)")
    ax2.set_xticks(list(x), training.config)
    ax2.set_yscale("log")
    ax2.set_ylim(top=ax2.get_ylim()[1] * 10)  # room for the legend above the bars
    ax2.set_ylabel("E_train (kWh)")
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def inference_figure_data(inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy rows: per config E_gen (ours and paper's), J per GFLOP, and the batch sweep if given."""
    paper = table2.set_index("model")["e_gen_wh"]
    rows = []
    for r in inference.itertuples():
        rows.append({"config": r.config, "quantity": "e_gen_wh", "value": r.e_gen_wh, "source": "this machine",
                     "method": r.e_gen_label, "batch_size": r.batch_size})
        rows.append({"config": r.config, "quantity": "j_per_gflop", "value": r.j_per_gflop, "source": "this machine",
                     "method": r.energy_method, "batch_size": r.batch_size})
        if r.config in paper.index:
            rows.append({"config": r.config, "quantity": "e_gen_wh", "value": float(paper[r.config]),
                         "source": "paper (1 × TITAN V)", "method": "measured by the authors", "batch_size": None})
    if sweep is not None:
        for r in sweep.itertuples():
            rows.append({"config": r.config, "quantity": "sweep_j_per_audio_s", "value": r.j_per_audio_s,
                         "source": "this machine", "method": r.energy_method, "batch_size": r.batch_size})
    return pd.DataFrame(rows)


def plot_inference_energy(inference: pd.DataFrame, table2: pd.DataFrame, sweep: pd.DataFrame | None = None) -> plt.Figure:
    """E_gen (ours vs paper, log), J per GFLOP, and energy per audio second vs synthesis batch size."""
    panels = 3 if sweep is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    ax1, ax2 = axes[0], axes[1]
    x = list(range(len(inference)))
    paper = table2.set_index("model")["e_gen_wh"]
    width = 0.4
    extrapolated = inference.e_gen_label.str.startswith("extrapolated").any()
    ax1.bar([i - width / 2 for i in x], inference.e_gen_wh, width, color=OURS_COLOR, hatch="//" if extrapolated else None,
            edgecolor="white", label="this machine" + (", extrapolated to 100 s" if extrapolated else ""))
    ax1.bar([i + width / 2 for i in x], [paper.get(c, float("nan")) for c in inference.config], width,
            color=PAPER_COLOR, label="paper (1 × TITAN V)")
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
        ax3.plot([best.batch_size], [best.j_per_audio_s], "*", color="tab:red", markersize=14,
                 label=f"lowest: batch {int(best.batch_size)}")
        ax3.set_xscale("log", base=2)
        ax3.set_xlabel(f"synthesis batch size ({sweep.config.iloc[0]})")
        ax3.set_ylabel("J per second of audio")
        ax3.set_ylim(bottom=0)  # differences are read against zero, not magnified
        ax3.legend(fontsize=8)
    fig.tight_layout()
    return fig
