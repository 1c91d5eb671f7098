"""The paired bootstrap: a ranking is stated only where the difference exceeds its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from waveflow.analysis.uncertainty import dominated_beyond_noise, paired_bootstrap, ranking_sentence, tied_with_best


def _scores(offsets: dict[str, float], clips: int = 8, crops: int = 4, noise: float = 0.3, seed: int = 1):
    """Every model on the same crops: a shared per-crop difficulty plus the model's offset and a little
    model-specific noise (paired data, as held-out NLL is)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1.0, (clips, crops))
    rows = []
    for name, offset in offsets.items():
        own = rng.normal(0, noise * 0.1, (clips, crops))
        for c in range(clips):
            for k in range(crops):
                rows.append({"config": name, "clip": f"c{c}", "crop": k, "samples": 22016,
                             "nll_bits": -4 + difficulty[c, k] + offset + own[c, k]})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_clear_difference_is_told_apart_and_a_tiny_one_is_not():
    boot = paired_bootstrap(_scores({"WF1": 0.0, "WF2": -0.5, "WF3": 0.001}))
    assert boot.told_apart("WF1", "WF2") and boot.told_apart("WF2", "WF3")
    assert not boot.told_apart("WF1", "WF3")
    best, tied, worse = tied_with_best(boot)
    assert best == "WF2" and tied == [] and sorted(worse) == ["WF1", "WF3"]
    summary = boot.summary.set_index("config")
    assert (summary["ci_low"] <= summary["mean"]).all() and (summary["mean"] <= summary["ci_high"]).all()


def test_the_sentence_claims_no_difference_inside_the_interval():
    boot = paired_bootstrap(_scores({"WF1": 0.0, "WF2": 0.0005, "WF5": 1.0}))
    text = ranking_sentence(boot)
    assert "cannot be told apart" in text and "WF5 is worse" in text
    assert "32 held-out crops of 8 clips" in text and "not the spread over seeds" in text


def test_dominance_counts_only_quality_differences_beyond_noise():
    boot = paired_bootstrap(_scores({"WF1": 0.0, "WF2": 0.0005, "WF5": 1.0}))
    energy = pd.DataFrame({"config": ["WF1", "WF2", "WF5"], "e_gen_wh": [0.7, 0.6, 6.7]})
    # WF2 is cheaper than WF1 but not better beyond noise: WF1 is not dominated; WF5 is, by both
    assert dominated_beyond_noise(energy, boot, "e_gen_wh") == {"WF5": ["WF1", "WF2"]}


def test_models_scored_on_different_crops_are_refused():
    scores = _scores({"WF1": 0.0, "WF2": 0.1})
    with pytest.raises(ValueError, match="same held-out units"):
        paired_bootstrap(scores.drop(index=0))
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap(scores[scores["clip"] == "c0"])


def test_an_energy_tolerance_treats_a_budget_overshoot_as_equal():
    boot = paired_bootstrap(_scores({"WF1": 0.0, "WF2": -0.5}))
    spent = pd.DataFrame({"config": ["WF1", "WF2"], "energy_j": [5000.1, 5000.3]})
    assert dominated_beyond_noise(spent, boot, "energy_j") == {}
    assert dominated_beyond_noise(spent, boot, "energy_j", energy_tolerance=0.01) == {"WF1": ["WF2"]}
