"""The one place that knows where things live in the repository.

Everything else builds paths from these constants, so the package never depends on the
current working directory or on a user's home.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
FIGURES = ROOT / "figures"
BUILD = ROOT / "build"
RESULTS = BUILD / "results"
RUNS = BUILD / "runs"
PARAMS = ROOT / "params"
LJSPEECH_MINI = DATA / "ljspeech-mini"
