"""The one place that knows where things live: the package's own tables, the repository, and outputs.

Runtime tables (CPU and GPU power, grid intensities, the report's template) ship inside the package,
under ``waveflow/_data/`` (:data:`PACKAGE_DATA`), so an installed wheel measures energy without the
repository. The paper's inputs (its tables, the survey, the bundled clips) stay in the repository's
``data/``.

Where outputs go: in a source checkout (the package's parent folder holds this project's
``pyproject.toml``), under the checkout, as the notebooks and ``make`` targets expect. Installed
anywhere else, under ``$WAVEFLOW_HOME``, or the current directory when it is not set, with the same
layout (``build/results/``, ``figures/``); never inside the installed package. In a checkout, each
profile's figures go to ``build/figures/<profile>/``: the committed ``figures/`` change only through
``waveflow figures --profile P``. Three outputs can be redirected on their own: ``WAVEFLOW_FIGURES``,
``WAVEFLOW_RESULTS`` and ``WAVEFLOW_RUNS`` (training run folders). ``make test`` points all three into
``build/test-outputs/``, so that running the notebooks at their tiny test defaults never touches what
``make reproduce`` made, even while it runs.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE_DATA = Path(str(files(__package__ or "waveflow").joinpath("_data")))
ROOT = Path(__file__).resolve().parents[1]


def _is_checkout(root: Path) -> bool:
    """Whether ``root`` is this project's source tree (not, say, a site-packages folder)."""
    pyproject = root / "pyproject.toml"
    return pyproject.is_file() and 'name = "waveflow-energy"' in pyproject.read_text(encoding="utf-8")


CHECKOUT = _is_checkout(ROOT)
#: where outputs go: the checkout, else $WAVEFLOW_HOME, else the current directory
HOME = ROOT if CHECKOUT else Path(os.environ.get("WAVEFLOW_HOME") or Path.cwd()).resolve()
DATA = ROOT / "data"
BUILD = HOME / "build"
#: the figures the README and the docs show, committed; only ``waveflow figures`` (``make figures``) changes them
COMMITTED_FIGURES = ROOT / "figures"


def profile_figures(profile: str) -> Path:
    """Where a run of ``profile`` writes its figures in a checkout: ``build/figures/<profile>/``."""
    return BUILD / "figures" / profile


#: where figures are written: $WAVEFLOW_FIGURES; in a checkout ``build/figures/<$WAVEFLOW_PROFILE>/``
#: (``interactive`` for a notebook run by hand), so no run overwrites the committed figures; installed
#: elsewhere, ``figures/`` under the output home
FIGURES = Path(
    os.environ.get("WAVEFLOW_FIGURES")
    or (profile_figures(os.environ.get("WAVEFLOW_PROFILE") or "interactive") if CHECKOUT else HOME / "figures")
)
RESULTS = Path(os.environ.get("WAVEFLOW_RESULTS", BUILD / "results"))
RUNS = Path(os.environ.get("WAVEFLOW_RUNS") or BUILD / "runs")
EXECUTED = BUILD / "notebooks"  # executed copies of the notebooks and their HTML
PARAMS = ROOT / "params"
LJSPEECH_MINI = DATA / "ljspeech-mini"
