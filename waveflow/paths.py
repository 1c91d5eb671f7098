"""The one place that knows where things live in the repository.

Everything else builds paths from these constants, so the package never depends on the
current working directory or on a user's home. Two outputs can be redirected with environment
variables: ``WAVEFLOW_FIGURES`` (default ``figures/``) and ``WAVEFLOW_RESULTS`` (default
``build/results/``). ``make test`` points both into ``build/test-outputs/`` so that running the
notebooks at their tiny test defaults never overwrites the figures a full ``make reproduce`` made.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
BUILD = ROOT / "build"
FIGURES = Path(os.environ.get("WAVEFLOW_FIGURES", ROOT / "figures"))
RESULTS = Path(os.environ.get("WAVEFLOW_RESULTS", BUILD / "results"))
RUNS = BUILD / "runs"
EXECUTED = BUILD / "notebooks"  # executed copies of the notebooks and their HTML
PARAMS = ROOT / "params"
LJSPEECH_MINI = DATA / "ljspeech-mini"
