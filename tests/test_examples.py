"""The tutorial runs as a user would run it: from another folder, writing its figures where told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"


@pytest.mark.slow
def test_the_own_model_tutorial_measures_two_models_and_draws_both_figures(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--steps", "6", "--eval-every", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    for name in ("pareto", "energy_to_quality"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.csv").is_file()
    curve = pd.read_csv(out / "energy_to_quality.csv")
    assert set(curve["model"]) == {"w32", "w256"} and (curve["energy_j_low"] <= curve["energy_j_high"]).all()
    pareto = pd.read_csv(out / "pareto.csv")
    assert {"gflop_per_audio_s", "gen_j_per_audio_s", "mel_l1", "pareto_optimal"} <= set(pareto.columns)
    assert (
        pareto.set_index("model").loc["w256", "gflop_per_audio_s"]
        > pareto.set_index("model").loc["w32", "gflop_per_audio_s"]
    )
    assert "meter: 3 steps" in run.stdout and "estimated:" in run.stdout or "measured:" in run.stdout
