"""Our survey (Figure 1 data): validation and the counts documented in data/survey/papers.md."""

from __future__ import annotations

import pandas as pd
import pytest

from waveflow.analysis.survey import (
    COMPLEXITY,
    MEASURES,
    QUALITY,
    SURVEY_CSV,
    count_measures,
    load_survey,
    papers_with_training_details,
)

# papers.md "Totals": all 30 rows / the 21 rows with verified == "yes".
TOTALS = {
    "mos": (24, 20),
    "cmos_or_preference": (8, 5),
    "inception_score": (3, 1),
    "fid_or_fad": (5, 4),
    "ndb": (2, 1),
    "log_likelihood": (5, 3),
    "spectral_distance": (7, 4),
    "pesq_or_stoi": (2, 2),
    "other_quality": (10, 4),
    "n_params": (14, 10),
    "training_time": (11, 5),
    "inference_speed": (23, 18),
    "flops": (5, 5),
    "hardware_reported": (27, 19),
    "energy": (0, 0),
}


def test_counts_match_the_documented_totals():
    all_rows = count_measures()
    verified = count_measures(verified_only=True)
    assert all_rows.n_surveyed.iloc[0] == 30 and verified.n_surveyed.iloc[0] == 21
    assert dict(zip(all_rows.measure, all_rows.n_papers)) == {k: v[0] for k, v in TOTALS.items()}
    assert dict(zip(verified.measure, verified.n_papers)) == {k: v[1] for k, v in TOTALS.items()}


def test_no_paper_reports_energy():
    assert load_survey()["energy"].sum() == 0


def test_quality_measures_come_first():
    groups = [m.group for m in MEASURES]
    assert groups == sorted(groups, key=[QUALITY, COMPLEXITY].index)
    assert count_measures().group.tolist() == groups


def test_papers_with_training_details():
    assert len(papers_with_training_details()) == 11  # papers.md: 11 rows give both hardware and time


def test_validation_names_the_problem(tmp_path):
    t = pd.read_csv(SURVEY_CSV)
    t.loc[0, "mos"] = 2
    t.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"'mos' must be 0 or 1.*wavenet"):
        load_survey(tmp_path / "bad.csv")
    t.drop(columns=["energy"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['energy'\]"):
        load_survey(tmp_path / "missing.csv")
