"""The reviewer's verdicts: computed from a run's tables with stated tolerances, never typed in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from waveflow.analysis.claims import (
    PAPER_E_GEN_WH,
    RATIO_TOLERANCE,
    VERDICTS,
    Claim,
    claims_table,
    ratio_verdict,
    value_verdict,
)

FIGURES = Path(__file__).resolve().parents[1] / "figures"
COUNTS = {"WF1": 5_916_372, "WF2": 5_916_372, "WF3": 12_782_036, "WF4": 22_252_756, "WF5": 86_186_196}


def test_ratios_within_the_tolerance_are_consistent():
    paper = {"WF1": 1.0, "WF2": 2.0, "WF3": 4.0}
    ours = {"WF1": 10.0, "WF2": 20.0 * (1 + RATIO_TOLERANCE * 0.9), "WF3": 40.0 * (1 - RATIO_TOLERANCE * 0.9)}
    assert ratio_verdict(ours, paper)[0] == "consistent"


def test_a_ratio_beyond_the_tolerance_differs_and_is_named():
    ours = {c: v * 3 for c, v in PAPER_E_GEN_WH.items()}  # the same ratios...
    ours["WF5"] = PAPER_E_GEN_WH["WF5"] * 3 * 2  # ...except WF5, twice as costly relative to WF1
    verdict, why = ratio_verdict(ours, PAPER_E_GEN_WH)
    assert verdict == "differs" and "WF5" in why and "WF2" not in why


def test_a_missing_configuration_is_not_comparable():
    assert ratio_verdict({"WF1": 1.0}, {"WF1": 1.0, "WF2": 2.0})[0] == "not comparable here"


def test_an_absolute_value_inside_our_interval_cannot_be_compared_outside_it_differs():
    assert value_verdict(437.6, 486.0, 161.0, 13776.0, "estimated")[0] == "not comparable here"
    assert value_verdict(437.6, 50.0, 20.0, 100.0, "estimated")[0] == "differs"
    verdict, why = value_verdict(1.382, 0.130, float("nan"), float("nan"), "measured:nvml-energy")
    assert verdict == "not comparable here" and "0.09" in why


def test_a_claim_refuses_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        Claim("c", "§1", "1", "1", "probably", "why", "#x")


def test_the_committed_run_gives_a_verdict_for_every_claim():
    table = claims_table(FIGURES, COUNTS)
    assert set(table["verdict"]) <= set(VERDICTS) and table["verdict"].notna().all()
    by_claim = table.set_index("claim")["verdict"]
    assert by_claim["No surveyed paper reports energy"] == "consistent"
    assert by_claim["Parameters of WF1–WF5"] == "consistent"
    assert by_claim["WF3 is Pareto-dominated (training space)"] == "consistent"
    assert by_claim["WF3 is Pareto-dominated (generation space)"] == "differs"  # the paper's own numbers
    assert by_claim["Quality of WF1–WF5 as 1 − %MOS"] == "not reproduced"
    assert by_claim["…which is slightly higher than the 52 kWh estimate"] == "consistent"
    assert "E_train relative to WF1, WF1–WF5" in by_claim


def test_a_changed_table_changes_the_verdict(tmp_path):
    """The verdicts follow the run's numbers: a run whose WF5 E_gen is in line with the paper's ratio
    turns the E_gen-ratio verdict from differs to consistent."""
    for csv in FIGURES.glob("*.csv"):
        shutil.copy(csv, tmp_path / csv.name)
    before = claims_table(tmp_path, COUNTS).set_index("claim")["verdict"]
    table = pd.read_csv(tmp_path / "04_inference_energy.csv")
    mine = (table["quantity"] == "e_gen_wh") & table["source"].str.startswith("this machine")
    wf1 = float(table.loc[mine & (table["config"] == "WF1"), "value"].iloc[0])
    for config, paper in PAPER_E_GEN_WH.items():
        table.loc[mine & (table["config"] == config), "value"] = wf1 * paper / PAPER_E_GEN_WH["WF1"]
    table.to_csv(tmp_path / "04_inference_energy.csv", index=False)
    after = claims_table(tmp_path, COUNTS).set_index("claim")["verdict"]
    key = "E_gen (100 s of audio) relative to WF1, WF1–WF5"
    assert (before[key], after[key]) == ("differs", "consistent")


def test_a_profile_that_did_not_run_a_notebook_says_so(tmp_path):
    table = claims_table(tmp_path)
    run_based = table[~table["why"].str.startswith("arithmetic on the paper's numbers")]
    assert (run_based["verdict"].isin(["not comparable here", "not reproduced"])).all()
    assert table["why"].str.contains("not run in this profile").any()
