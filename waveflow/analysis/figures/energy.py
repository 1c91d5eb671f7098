"""Notebooks 03 and 04: E_train and E_gen measured on this machine next to the paper's.

:func:`plot_training_energy` draws J per training crop (one example of the run: ``segment``
samples, which the axis label and the CSV's ``segment`` and ``unit`` columns state, since a run's
crop is usually shorter than the paper's 16,000 samples) and the extrapolated E_train against
the paper's Carbontracker prediction; :func:`plot_inference_energy` draws E_gen against the paper's,
J per GFLOP and the synthesis batch sweep. Each ``*_figure_data`` returns the tidy numbers behind
its figure for :func:`~waveflow.analysis.save_figure`, every number with its low/high bound and how
it was obtained (the columns every figure CSV shares, :func:`_tidy`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .common import (
    OURS_COLOR,
    PAPER_COLOR,
    PAPER_E_GEN,
    PAPER_E_GEN_METHOD,
    PAPER_E_TRAIN,
    PAPER_E_TRAIN_METHOD,
    _axis_label,
    _log_floor,
    _pue_note,
    _yerr,
)


# ------------------------------------------------------------------------------------------
# the figure CSVs' rows
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


# ------------------------------------------------------------------------------------------
# notebook 03: training energy
#: WaveFlow's training crop, the one the paper's E_train schedule is counted in (8 crops per step);
#: equal to :data:`waveflow.experiments.measure.PAPER_SEGMENT`, which the tests check.
PAPER_SEGMENT = 16_000


def _segment(r) -> float:
    """Samples per training example (crop) of a result row, NaN when the row does not record it."""
    value = getattr(r, "segment", None)
    return float(value) if value is not None and pd.notna(value) else float("nan")


def _crop_unit(segment: float) -> str:
    return f"J per {segment:,.0f}-sample crop" if segment == segment else "J per training example (crop not recorded)"


def training_figure_data(training: pd.DataFrame, table2: pd.DataFrame) -> pd.DataFrame:
    """Tidy rows: per config, J per training example (ours) and E_train (ours extrapolated, paper's),
    each with its low/high bound (equal to the value where no interval is modelled) and method.

    ``segment`` is the crop an example is made of: the run's own for ``j_per_example`` (usually not
    the paper's 16,000 samples, so the value is not J per paper example), :data:`PAPER_SEGMENT` for
    the E_train rows, which are at the paper's schedule; ``unit`` says the same in words.
    """
    paper = table2.set_index("model")["e_train_kwh"]
    schedule = f"kWh, the paper's schedule of 8 x {PAPER_SEGMENT:,}-sample crops per step"
    rows = []
    for r in training.itertuples():
        segment = _segment(r)
        rows.append(
            _ours(r, "j_per_example", "j_per_example", "this machine", r.energy_method)
            | {"segment": segment, "unit": _crop_unit(segment)}
        )
        rows.append(
            _ours(
                r,
                "e_train_kwh",
                "e_train_kwh_extrapolated",
                "this machine, extrapolated",
                r.e_train_label,
                stem="e_train_kwh",
            )
            | {"segment": PAPER_SEGMENT, "unit": schedule}
        )
        if r.config in paper.index:
            row = _paper(r.config, "e_train_kwh", float(paper[r.config]), PAPER_E_TRAIN, PAPER_E_TRAIN_METHOD)
            rows.append(row | {"segment": PAPER_SEGMENT, "unit": schedule})
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


def _crop_scale(training: pd.DataFrame) -> tuple[str, str]:
    """``(axis unit, scaling note)`` of the per-example panel: J per crop of the run's length, and how
    many such crops one of the paper's 16,000-sample examples is."""
    segments = sorted({s for s in (_segment(r) for r in training.itertuples()) if s == s})
    if len(segments) == 1:
        ratio = PAPER_SEGMENT / segments[0]
        return _crop_unit(
            segments[0]
        ), f"the paper's examples are {PAPER_SEGMENT:,} samples: {ratio:.3g} of these crops each"
    if segments:
        lengths = ", ".join(f"{s:,.0f}" for s in segments)
        return f"J per training crop ({lengths} samples)", f"not per {PAPER_SEGMENT:,}-sample example of the paper"
    return _crop_unit(float("nan")), f"not per {PAPER_SEGMENT:,}-sample example of the paper"


def plot_training_energy(training: pd.DataFrame, table2: pd.DataFrame) -> plt.Figure:
    """Left: J per training crop of the run's ``segment`` samples; right: extrapolated E_train vs the
    paper's prediction (log scale).

    The left axis names the crop length and the panel how it scales to one of the paper's
    16,000-sample examples, so the bars are not mistaken for J per paper example (E_train's
    extrapolation already scales per audio sample). Our estimated numbers carry their interval as
    error bars; both axes name the method.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    x = list(range(len(training)))
    ax1.bar(x, training.j_per_example, color=OURS_COLOR)
    err = _yerr(training, "j_per_example")
    if err is not None:
        ax1.errorbar(x, training.j_per_example, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
        ax1.set_yscale("log")
        _log_floor(ax1, training.j_per_example, training.j_per_example - err[0])
    ax1.set_xticks(x, training.config)
    unit, scale = _crop_scale(training)
    ax1.set_ylabel(_axis_label(unit, training, "energy_method"), fontsize=8)
    note = "; error bars: interval of the estimate" if err is not None else ""
    ax1.set_title(f"this machine ({_pue_note(training)}){note}\n{scale}", fontsize=9)
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


# ------------------------------------------------------------------------------------------
# notebook 04: inference energy
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
