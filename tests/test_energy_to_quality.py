"""Energy to quality: interleaved budget runs on tiny models, and the derived tables on made-up marks."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from waveflow.experiments import energy_to_quality as e2q
from waveflow.paths import LJSPEECH_MINI

TINY = {"res_channels": 8, "n_flows": 2, "n_layers": 2}


def marks(curves: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """A marks table from ``{config: [(joules, nll bits), ...]}`` (one mark per step)."""
    rows = [
        dict(
            config=c,
            step=i + 1,
            examples=i + 1,
            energy_j=j,
            energy_j_low=j / 3,
            energy_j_high=j * 3,
            energy_method="estimated:tdp×utilisation",
            wall_s=float(i + 1),
            heldout_nll_bits=b,
        )
        for c, pts in curves.items()
        for i, (j, b) in enumerate(pts)
    ]
    return pd.DataFrame(rows, columns=e2q.COLUMNS)


# Small starts fast and stalls; Big starts slow and overtakes it between 40 J and 80 J.
CROSSING = marks({"Small": [(10, 3.0), (20, 2.5), (40, 2.4), (80, 2.35)], "Big": [(40, 2.9), (80, 2.2), (160, 1.9)]})


def test_energy_to_targets_takes_the_first_mark_at_or_below_and_says_when_not_reached():
    table = e2q.energy_to_targets(CROSSING, [2.5, 2.0])
    got = {(r.target_nll_bits, r.config): r.energy_j for r in table.itertuples()}
    assert got[(2.5, "Small")] == 20 and got[(2.5, "Big")] == 80
    assert got[(2.0, "Small")] == e2q.NOT_REACHED and got[(2.0, "Big")] == 160
    assert table[table.reached].step.tolist() == [2, 2, 3]


def test_best_at_budgets_uses_the_quality_each_run_had_at_that_energy():
    best = e2q.best_at_budgets(CROSSING, [20, 40, 80, 160])
    assert best.best.tolist() == ["Small", "Small", "Big", "Big"]
    assert math.isnan(best.Big.iloc[0]) and best.Small.iloc[3] == 2.35  # Small's last mark stands at 160 J
    assert best.best_nll_bits.tolist() == [2.5, 2.4, 2.2, 1.9]


def test_crossings_and_findings_are_computed_from_the_data():
    crossed = e2q.crossings(CROSSING)
    assert crossed.to_dict("records") == [{"energy_j": 80.0, "before": "Small", "after": "Big"}]
    text = e2q.findings(CROSSING, e2q.best_at_budgets(CROSSING, [40, 160]), crossed)
    assert "Small and Big cross by 80 J" in " ".join(text) and "Big has the lowest held-out NLL (1.9000" in text[0]
    capped = e2q.findings(CROSSING, e2q.best_at_budgets(CROSSING, [160]), pd.concat([crossed] * 3), max_crossings=2)
    assert "... and 1 more crossings up to 80 J" in capped[-1] and len(capped) == 2 + 2 + 1
    parallel = marks({"A": [(10, 3.0), (20, 2.0)], "B": [(10, 3.5), (20, 2.5)]})
    assert e2q.crossings(parallel).empty
    words = e2q.findings(parallel, e2q.best_at_budgets(parallel, [10, 20]), e2q.crossings(parallel))
    assert "A is the best configuration at every budget" in words[1] and "No two curves cross" in words[2]


def test_default_targets_and_budgets_lie_inside_the_data():
    targets = e2q.default_targets(CROSSING)
    assert len(targets) == 3 and all(1.9 < t < 3.0 for t in targets) and targets == sorted(targets, reverse=True)
    budgets = e2q.default_budgets(CROSSING)
    assert budgets[0] == pytest.approx(40) and budgets[-1] == pytest.approx(160)


def test_marks_table_without_a_column_or_rows_is_refused():
    with pytest.raises(ValueError, match=r"lacks columns \['heldout_nll_bits'\]"):
        e2q.at_budget(CROSSING.drop(columns="heldout_nll_bits"))
    with pytest.raises(ValueError, match="has no rows"):
        e2q.energy_to_targets(CROSSING.iloc[:0], [1.0])


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="ENERGY_BUDGET_J: expected a positive number"):
        e2q.BudgetRun(energy_budget_j=0)
    with pytest.raises(ValueError, match="EVAL_EVERY"):
        e2q.BudgetRun(energy_budget_j=1, eval_every=0)
    with pytest.raises(ValueError, match=r"MODEL_OVERRIDES: unknown WaveFlow fields \['depth'\]"):
        e2q.BudgetRun(energy_budget_j=1, model_overrides={"depth": 2}).model("WF1")


def test_run_budget_interleaves_configurations_and_stops_each_at_the_budget(tmp_path):
    chunks = []
    opts = e2q.BudgetRun(
        energy_budget_j=1e9,
        eval_every=1,
        max_steps=2,
        batch_size=1,
        segment=2048,
        val_samples=4096,
        data=str(LJSPEECH_MINI),
        out=str(tmp_path),
        device="cpu",
        model_overrides=TINY,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generic-TDP advice of the meter
        table = e2q.run_budget(["WF1", "WF2"], opts, on_chunk=lambda c, s: chunks.append((c, s)))
    assert chunks == [("WF1", 1), ("WF2", 1), ("WF1", 2), ("WF2", 2)]  # round-robin, not one after the other
    assert list(table.columns) == e2q.COLUMNS and table.step.tolist() == [1, 2, 1, 2]
    assert (table.energy_j > 0).all() and table.heldout_nll_bits.map(math.isfinite).all()
    assert not (tmp_path / "warmup-WF1").exists()
    # Now a budget below one step: each configuration stops after its first step, from scratch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = e2q.run_budget(
            ["WF1", "WF2"], e2q.BudgetRun(**{**opts.__dict__, "energy_budget_j": 1e-6, "max_steps": 5})
        )
    assert small.step.tolist() == [1, 1] and e2q.at_budget(small).config.tolist() == ["WF1", "WF2"]
    table = e2q.with_provenance(small, "quick")
    assert set(table.profile) == {"quick"} and "logical cores" in table.machine.iloc[0]


def test_energy_to_quality_figure_is_log_x_names_the_method_and_records_provenance():
    import matplotlib

    matplotlib.use("Agg")
    from waveflow.analysis import figures

    fig = figures.plot_energy_to_quality(CROSSING, budget_j=160)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "estimated:tdp×utilisation" in ax.get_xlabel()
    assert len(ax.get_lines()) == 2 + 1 and "low–high bound" in ax.get_title()  # two curves and the budget line
    data = figures.energy_to_quality_figure_data(CROSSING, "quick", "test machine")
    assert set(data.profile) == {"quick"} and set(data.machine) == {"test machine"} and len(data) == len(CROSSING)


def test_measured_pareto_labels_and_ticks_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.text import Text

    from waveflow.analysis import figures

    # WF1 and WF2 at almost the same point: their labels overlapped in the old figure.
    table = pd.DataFrame(
        {
            "config": ["WF1", "WF2", "WF3", "WF4", "WF5"],
            "heldout_nll_bits": [1.3000, 1.3001, 1.29, 1.28, 1.25],
            "energy_j": [15.1, 15.2, 15.9, 16.4, 17.0],
            "energy_j_low": [5.0, 5.1, 5.3, 5.5, 5.7],
            "energy_j_high": [420.0, 425.0, 445.0, 460.0, 476.0],
            "energy_method": ["estimated:tdp×utilisation"] * 5,
            "e_gen_wh": [0.010, 0.0101, 0.02, 0.04, 0.16],
            "e_gen_wh_low": [0.003, 0.003, 0.007, 0.013, 0.05],
            "e_gen_wh_high": [0.28, 0.28, 0.56, 1.1, 4.5],
            "e_gen_wh_kind": ["extrapolated from 0.5 s (estimated:tdp×utilisation)"] * 5,
        }
    )
    fig = figures.plot_measured_pareto(table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert "_" not in ax.get_xlabel().split("\n")[0] and "_" not in ax.get_title()  # words, not column names
        # The text's own box (an Annotation's extent would include its leader line).
        labels = [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_text() in set(table.config)]
        assert len(labels) == 5
        for i, a in enumerate(labels):
            assert not any(a.overlaps(b) for b in labels[i + 1 :])
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        ticks = [t for t in ticks if ax.bbox.x0 - 5 <= t.x0 <= ax.bbox.x1 + 5]
        assert 1 <= len(ticks) <= 6
        for i, a in enumerate(ticks):
            assert not any(a.overlaps(b) for b in ticks[i + 1 :])


# Your own columns: a predicted MOS (higher is better) against watt-hours, rows named by ``model``, no
# step, method or bounds. The same curves as CROSSING with MOS = 5 - NLL, so every answer is known.
MOS = dict(quality="mos", lower_is_better=False, energy="energy_wh", label="model")
MOS_MARKS = pd.DataFrame(
    {"model": r.config, "step": r.step, "energy_wh": r.energy_j, "mos": round(5 - r.heldout_nll_bits, 4)}
    for r in CROSSING.itertuples()
)


def test_own_columns_at_budget_and_quality_at():
    last = e2q.at_budget(MOS_MARKS, **MOS)
    assert last.model.tolist() == ["Small", "Big"] and last.mos.tolist() == [2.65, 3.1]
    early = e2q.at_budget(MOS_MARKS, 50, **MOS)  # the quality each run had when it had spent 50 Wh
    assert early.model.tolist() == ["Small", "Big"] and early.mos.tolist() == [2.6, 2.1]
    assert e2q.at_budget(MOS_MARKS, 15, **MOS).model.tolist() == ["Small"]
    small = MOS_MARKS[MOS_MARKS.model == "Small"]
    assert e2q.quality_at(small, 30, **MOS) == 2.5 and math.isnan(e2q.quality_at(small, 5, **MOS))


def test_own_columns_targets_budgets_and_best():
    table = e2q.energy_to_targets(MOS_MARKS, [2.5, 3.0], **MOS)
    assert list(table.columns) == [
        "target_mos",
        "model",
        "energy_wh",
        "energy_wh_low",
        "energy_wh_high",
        "step",
        "reached",
    ]
    got = {(r.target_mos, r.model): r.energy_wh for r in table.itertuples()}
    assert got[(2.5, "Small")] == 20 and got[(2.5, "Big")] == 80  # the first mark at or above the target
    assert got[(3.0, "Small")] == e2q.NOT_REACHED and got[(3.0, "Big")] == 160
    best = e2q.best_at_budgets(MOS_MARKS, [20, 40, 80, 160], **MOS)
    assert list(best.columns) == ["budget_energy_wh", "Small", "Big", "best", "best_mos"]
    assert best.best.tolist() == ["Small", "Small", "Big", "Big"] and best.best_mos.tolist() == [2.5, 2.6, 2.8, 3.1]
    targets = e2q.default_targets(MOS_MARKS, **MOS)
    assert len(targets) == 3 and all(2.0 < t < 3.1 for t in targets) and targets == sorted(targets)  # easiest first
    assert e2q.default_budgets(MOS_MARKS, **MOS) == e2q.default_budgets(CROSSING)


def test_own_columns_crossings_and_findings_in_words():
    crossed = e2q.crossings(MOS_MARKS, **MOS)
    assert crossed.to_dict("records") == [{"energy_wh": 80.0, "before": "Small", "after": "Big"}]
    words = dict(quality_label="predicted MOS", quality_unit="", energy_unit="Wh", energy_use="")
    text = e2q.findings(MOS_MARKS, e2q.best_at_budgets(MOS_MARKS, [40, 160], **MOS), crossed, **MOS, **words)
    assert text[0] == "At the largest budget (160 Wh), Big has the highest predicted MOS (3.1000)."
    assert text[1] == "The best model changes with the budget: Small at 40 Wh, Big at 160 Wh."
    assert text[2] == (
        "The curves of Small and Big cross by 80 Wh: below it Small has the higher predicted MOS, from there on Big."
    )


def test_own_columns_without_a_step_order_marks_by_energy():
    no_step = MOS_MARKS.drop(columns="step").sample(frac=1, random_state=0)
    cols = {**MOS, "step": None}
    last = e2q.at_budget(no_step, **cols)
    assert dict(zip(last.model, last.mos)) == {"Small": 2.65, "Big": 3.1}
    reached = e2q.energy_to_targets(no_step, [2.5], **cols).set_index("model")
    assert reached.loc["Small", "mark"] == 2 and reached.loc["Big", "mark"] == 2
    assert e2q.crossings(no_step, **cols).to_dict("records") == [{"energy_wh": 80.0, "before": "Small", "after": "Big"}]


def test_own_columns_are_checked_by_name():
    with pytest.raises(ValueError, match=r"lacks columns \['mos'\]"):
        e2q.at_budget(MOS_MARKS.drop(columns="mos"), **MOS)
    with pytest.raises(ValueError, match="column 'mos' holds non-numbers"):
        e2q.crossings(MOS_MARKS.assign(mos="good"), **MOS)
    with pytest.raises(ValueError, match="lower_is_better='no'; expected True or False"):
        e2q.at_budget(MOS_MARKS, **{**MOS, "lower_is_better": "no"})
    # the default columns need only what the helpers read, not the whole marks table of a training run
    assert e2q.at_budget(CROSSING.drop(columns=["examples", "wall_s"])).config.tolist() == ["Small", "Big"]


def test_the_helpers_import_without_torch():
    import subprocess
    import sys

    code = "import sys, waveflow.analysis.curves, waveflow.analysis.command; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
    from waveflow.analysis import curves

    assert e2q.at_budget is curves.at_budget and e2q.COLUMNS is curves.COLUMNS and e2q.nll_at is curves.quality_at


def test_energy_to_quality_figure_with_own_columns():
    import matplotlib

    matplotlib.use("Agg")
    from waveflow.analysis import figures

    fig = figures.plot_energy_to_quality(
        MOS_MARKS,
        quality="mos",
        quality_label="predicted MOS",
        energy="energy_wh",
        energy_label="energy (Wh)",
        label="model",
    )
    ax = fig.axes[0]
    assert ax.get_ylabel() == "predicted MOS" and ax.get_xlabel() == "energy (Wh)" and len(ax.get_lines()) == 2
    assert "low–high" not in ax.get_title() and ax.get_legend().get_title().get_text() == "model"
    matplotlib.pyplot.close(fig)
