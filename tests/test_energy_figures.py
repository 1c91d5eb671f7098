"""Energy figures: intervals drawn as error bars, every energy axis naming its method, the paper's
E_train labelled a Carbontracker prediction, the batch sweep's noise margin."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from waveflow.analysis import figures
from waveflow.paths import DATA

EST = "estimated:tdp-per-thread×utilisation"


@pytest.fixture
def table2():
    return pd.read_csv(DATA / "paper" / "table2.csv")


def training_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config": ["WF1", "WF2"],
            "j_per_example": [10.0, 12.0],
            "j_per_example_low": [3.0, 3.6],
            "j_per_example_high": [300.0, 360.0],
            "e_train_kwh_extrapolated": [100.0, 120.0],
            "e_train_kwh_low": [30.0, 36.0],
            "e_train_kwh_high": [3000.0, 3600.0],
            "energy_method": [EST, EST],
            "e_train_label": [f"extrapolated from 2 steps ({EST})"] * 2,
            "pue": [1.0, 1.0],
            "segment": [2048, 2048],
        }
    )


def inference_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config": ["WF1", "WF2"],
            "batch_size": [2, 2],
            "e_gen_wh": [1.0, 1.1],
            "e_gen_wh_low": [0.3, 0.33],
            "e_gen_wh_high": [30.0, 33.0],
            "j_per_gflop": [0.02, 0.021],
            "j_per_gflop_low": [0.006, 0.0063],
            "j_per_gflop_high": [0.6, 0.63],
            "energy_method": [EST, EST],
            "e_gen_label": [f"extrapolated from 1.00 s ({EST})"] * 2,
            "pue": [1.0, 1.0],
        }
    )


def sweep_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config": ["WF1"] * 3,
            "batch_size": [1, 2, 4],
            "j_per_audio_s": [100.0, 97.0, 120.0],
            "j_per_audio_s_low": [30.0, 29.1, 36.0],
            "j_per_audio_s_high": [3000.0, 2910.0, 3600.0],
            "energy_method": [EST] * 3,
            "optimal": [False, True, False],
            "within_noise": [True, True, False],
        }
    )


def errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_training_figure_draws_intervals_and_names_methods(table2):
    fig = figures.plot_training_energy(training_rows(), table2)
    ax1, ax2 = fig.axes
    assert errorbars(ax1) and errorbars(ax2)
    assert EST in ax1.get_ylabel() and "extrapolated, " + EST in ax2.get_ylabel()
    legend = [t.get_text() for t in ax2.get_legend().get_texts()]
    assert any("Carbontracker prediction" in t for t in legend)
    plt.close(fig)
    data = figures.training_figure_data(training_rows(), table2)
    paper = data[data.source.str.startswith("paper")]
    assert paper.method.str.startswith("predicted by the authors with Carbontracker").all()
    assert not data.method.str.contains("measured by the authors").any()
    ours = data[(data.quantity == "e_train_kwh") & ~data.source.str.startswith("paper")]
    assert ours.low.tolist() == [30.0, 36.0] and ours.high.tolist() == [3000.0, 3600.0]


def test_inference_figure_intervals_methods_and_noise_margin(table2):
    fig = figures.plot_inference_energy(inference_rows(), table2, sweep_rows(), noise=0.10)
    ax1, ax2, ax3 = fig.axes
    assert errorbars(ax1) and errorbars(ax2) and errorbars(ax3)
    for ax in (ax1, ax2, ax3):
        assert EST in ax.get_ylabel(), ax.get_ylabel()
    star = [t.get_text() for t in ax3.get_legend().get_texts()]
    assert star == ["lowest: batch 2; within the 10% noise: 1"]
    plt.close(fig)
    data = figures.inference_figure_data(inference_rows(), table2, sweep_rows())
    assert (data[data.source.str.startswith("paper")].method.str.contains("tool and PUE not stated")).all()
    sweep = data[data.quantity == "sweep_j_per_audio_s"]
    assert sweep.within_noise.tolist() == [True, True, False] and sweep.high.tolist() == [3000.0, 2910.0, 3600.0]


def test_training_figure_is_per_crop_of_the_runs_segment_not_per_paper_example(table2):
    """J per example of a 2,048-sample run is not J per 16,000-sample paper example: the axis names
    the crop, the panel the factor (7.81), and the CSV carries the crop length and unit per row."""
    from waveflow.analysis.figures.energy import PAPER_SEGMENT
    from waveflow.experiments.measure import PAPER_SEGMENT as MEASURED_PAPER_SEGMENT

    assert PAPER_SEGMENT == MEASURED_PAPER_SEGMENT == 16_000
    fig = figures.plot_training_energy(training_rows(), table2)
    ax1 = fig.axes[0]
    assert ax1.get_ylabel().startswith("J per 2,048-sample crop\n")
    assert "16,000 samples: 7.81 of these crops each" in ax1.get_title()
    plt.close(fig)
    data = figures.training_figure_data(training_rows(), table2)
    per_crop = data[data.quantity == "j_per_example"]
    assert per_crop.segment.tolist() == [2048, 2048] and set(per_crop.unit) == {"J per 2,048-sample crop"}
    e_train = data[data.quantity == "e_train_kwh"]
    assert set(e_train.segment) == {16_000} and e_train.unit.str.contains("8 x 16,000-sample crops").all()
    # the columns every figure CSV shares come first, unchanged
    assert list(data.columns[:7]) == ["config", "quantity", "value", "low", "high", "source", "method"]
    # a table that does not record its crop says so instead of implying the paper's
    fig = figures.plot_training_energy(training_rows().drop(columns=["segment"]), table2)
    assert "crop not recorded" in fig.axes[0].get_ylabel() and "not per 16,000-sample" in fig.axes[0].get_title()
    plt.close(fig)


def test_measured_values_without_bounds_draw_no_error_bars(table2):
    rows = training_rows().drop(columns=["j_per_example_low", "j_per_example_high"])
    rows = rows.assign(e_train_kwh_low=rows.e_train_kwh_extrapolated, e_train_kwh_high=rows.e_train_kwh_extrapolated)
    fig = figures.plot_training_energy(rows, table2)
    assert not errorbars(fig.axes[0]) and not errorbars(fig.axes[1])
    plt.close(fig)


def test_pareto_panels_draw_energy_intervals():
    df = pd.DataFrame(
        {
            "config": ["A", "B", "C"],
            "q": [0.3, 0.2, 0.25],
            "e": [1.0, 2.0, 3.0],
            "e_low": [0.5, 1.0, 1.5],
            "e_high": [10.0, 20.0, 30.0],
        }
    )
    fig = figures.plot_pareto_spaces(
        df, {"s": ["q", "e"]}, "config", ncols=1, intervals={"e": ("e_low", "e_high")}, log_energy=True
    )
    ax = fig.axes[0]
    assert errorbars(ax) and ax.get_xscale() == "log" and ax.get_title() == "s: dominated = C"
    plt.close(fig)


def test_pareto_spaces_table_carries_the_plotted_intervals():
    from waveflow.analysis.pareto import pareto_spaces

    df = pd.DataFrame({"config": ["A", "B"], "q": [0.3, 0.2], "e": [1.0, 2.0], "e_lo": [0.5, 1.0], "e_hi": [9.0, 18.0]})
    t = pareto_spaces(df, {"s": ["q", "e"]}, "config", intervals={"e": ("e_lo", "e_hi")})
    assert t.y_low.tolist() == [0.5, 1.0] and t.y_high.tolist() == [9.0, 18.0] and "x_low" not in t


def measured_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "config": ["WF1", "WF2", "WF3"],
            "heldout_nll_bits": [1.30, 1.25, 1.28],
            "energy_j": [15.0, 16.0, 17.0],
            "energy_method": ["measured:rapl"] * 3,
            "e_gen_wh": [0.01, 0.02, 0.04],
            "e_gen_wh_kind": ["measured:rapl"] * 3,
        }
    )


def test_measured_pareto_takes_another_quality_and_its_label():
    table = measured_table().assign(mos=lambda t: 5 - t.heldout_nll_bits).rename(columns={"config": "model"})
    fig = figures.plot_measured_pareto(
        table, quality="mos", quality_label="predicted MOS (higher is better)", lower_is_better=False, label="model"
    )
    nll = figures.plot_measured_pareto(measured_table())
    for ax, ref in zip(fig.axes, nll.axes):
        assert ax.get_ylabel() == "predicted MOS (higher is better)" and "NLL" in ref.get_ylabel()
        assert ax.get_title() == ref.get_title()  # the same dominated models: MOS = 5 - NLL
    assert fig.axes[0].get_title() == "Quality against training energy\ndominated: WF3"
    plt.close(fig)
    plt.close(nll)


@pytest.mark.parametrize(("maximize", "where"), [(["q"], "post"), (["e"], "pre")])
def test_pareto_figure_draws_the_front_as_the_staircase_of_its_direction(maximize, where):
    from waveflow.analysis.pareto import pareto_table

    df = pd.DataFrame({"m": ["a", "b", "c"], "e": [1.0, 2.0, 3.0], "q": [1.0, 2.0, 3.0]})  # a trade-off: all optimal
    # x = e, y = q: minimising e with q maximised, or maximising e with q minimised
    t = pareto_table(df, ["e", "q"], "m", maximize=maximize)
    fig = figures.plot_pareto(t, ["e", "q"], "m", maximize=maximize)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("e (") and ("higher" in ax.get_xlabel()) == ("e" in maximize)
    (line,) = ax.get_lines()
    assert line.get_drawstyle() == f"steps-{where}"
    labels = {t.get_text() for t in ax.texts}
    assert labels == {"a", "b", "c"}
    plt.close(fig)


def test_pareto_figure_of_three_objectives_has_one_panel_per_pair():
    from waveflow.analysis.pareto import pareto_table

    df = pd.DataFrame({"m": ["a", "b", "c", "d"], "x": [1, 2, 3, 4], "y": [4, 3, 2, 5], "z": [1, 1, 1, 0]})
    t = pareto_table(df, ["x", "y", "z"], "m")
    fig = figures.plot_pareto(t, ["x", "y", "z"], "m")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [(ax.get_xlabel().split()[0], ax.get_ylabel().split()[0]) for ax in visible] == [
        ("x", "y"), ("x", "z"), ("y", "z")
    ]  # fmt: skip
    assert not any(ax.get_lines() for ax in visible)  # no staircase: a projection's front is not the front
    assert "optimal in all 3 objectives" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="at least two"):
        figures.plot_pareto(t, ["x"], "m")


# ------------------------------------------------------------------------------------------------
# quality against cumulative energy
def curves(high_factor: dict[str, float] | None = None) -> pd.DataFrame:
    """Five curves whose energy interval is x1/3 to x30 of each mark, unless ``high_factor`` says otherwise."""
    rows = []
    for k, name in enumerate(["WF1", "WF2", "WF3", "WF4", "WF5"]):
        for step in range(1, 5):
            j = 10.0 * step * (k + 1)
            high = (high_factor or {}).get(name, 30.0)
            rows.append(
                {
                    "config": name,
                    "step": step,
                    "energy_j": j,
                    "energy_j_low": j / 3,
                    "energy_j_high": j * high,
                    "energy_method": EST,
                    "heldout_nll_bits": 2.0 - 0.1 * step - 0.01 * k,
                }
            )
    return pd.DataFrame(rows)


def test_a_common_interval_factor_is_drawn_once_as_a_bracket():
    from matplotlib.collections import PolyCollection

    from waveflow.analysis.figures.quality import common_interval_factor

    marks = curves()
    low, high = common_interval_factor(marks)
    assert low == pytest.approx(1 / 3) and high == pytest.approx(30.0)
    fig = figures.plot_energy_to_quality(marks, budget_j=200)
    ax = fig.axes[0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]  # no per-curve bands
    (bracket,) = [t for t in ax.texts if "may lie anywhere" in t.get_text()]
    assert "×0.333 to ×30" in bracket.get_text()
    title = ax.get_title()
    assert "per joule" not in title and title.startswith("Quality against cumulative training energy")
    assert "bracket: the energy estimate's low–high bound" in title
    # the bracket spans low..high around its dot, inside the x axis
    (arrow,) = [t for t in ax.texts if t.get_text() == ""]
    (x_high, _), (x_low, _) = arrow.xyann, arrow.xy
    assert x_high / x_low == pytest.approx(30.0 * 3) and ax.get_xlim()[0] <= x_low and x_high <= ax.get_xlim()[1]
    plt.close(fig)


def test_intervals_that_differ_between_curves_keep_one_band_each():
    from matplotlib.collections import PolyCollection

    from waveflow.analysis.figures.quality import common_interval_factor

    marks = curves({"WF5": 10.0})
    assert common_interval_factor(marks) is None
    assert common_interval_factor(curves({"WF5": 30.2})) is not None  # within 1 %: one factor
    assert common_interval_factor(curves({"WF5": 30.6})) is None  # 2 % apart: not one factor
    fig = figures.plot_energy_to_quality(marks)
    ax = fig.axes[0]
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 5
    assert not [t for t in ax.texts if "may lie anywhere" in t.get_text()]
    assert "shaded: the energy estimate's low–high bound" in ax.get_title()
    plt.close(fig)


def test_five_curves_get_five_distinguishable_colours():
    import seaborn as sns
    from matplotlib.colors import to_hex

    fig = figures.plot_energy_to_quality(curves(), title="Held-out NLL")
    colours = [to_hex(line.get_color()) for line in fig.axes[0].get_lines()]
    assert colours == [to_hex(c) for c in sns.color_palette("tab10", 5)]
    plt.close(fig)
    unbounded = curves().drop(columns=["energy_j_low", "energy_j_high"])
    fig = figures.plot_energy_to_quality(unbounded, title="Held-out NLL")
    assert fig.axes[0].get_title() == "Held-out NLL" and not fig.axes[0].texts
    plt.close(fig)
