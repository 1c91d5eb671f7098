"""The energy log: the tidy CSV that every measured block appends one row to.

:data:`RECORD_COLUMNS` is its layout (stable, so notebooks can rely on it; an
:class:`~waveflow.energy.EnergyRecord` writes itself as one row of it), :func:`append_record` adds
a row under a file lock and refuses a file of another layout, and :func:`read_records` loads the
log as a DataFrame with text and numeric columns told apart.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import RESULTS

if TYPE_CHECKING:
    from .record import EnergyRecord

#: Where records go when no path is given: ``build/results/energy_log.csv`` beside the notebooks' results.
DEFAULT_LOG = RESULTS / "energy_log.csv"

#: Columns of the energy log, in order; one row per measured block. Joules are without PUE.
#: ``<kind>_j`` is the reported (middle) figure; ``<kind>_j_low``/``_high`` bound it when the
#: component is estimated and are empty for a measurement; ``<kind>_scope`` says what it covers.
#: ``git_commit`` is the measuring tool's checkout, ``project_commit`` the measured project's
#: (the working directory's repository) and ``tool_version`` the tool's version.
#: ``<kind>_tdp_time_j`` is what the paper's TDP × time method says for the kind's measured devices
#: over the block and ``<kind>_tdp_ratio`` measured / that (empty without a measured device with a
#: TDP; see :mod:`~waveflow.energy.tdp_check`).
RECORD_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "label",
    "hostname",
    "git_commit",
    "project_commit",
    "tool_version",
    "command",
    "exit_code",
    "wall_s",
    "gpu_j",
    "gpu_j_low",
    "gpu_j_high",
    "gpu_method",
    "gpu_scope",
    "gpu_devices",
    "gpu_tdp_time_j",
    "gpu_tdp_ratio",
    "cpu_j",
    "cpu_j_low",
    "cpu_j_high",
    "cpu_method",
    "cpu_scope",
    "cpu_device",
    "cpu_tdp_w",
    "cpu_tdp_match",
    "cpu_w_per_thread",
    "cpu_threads",
    "cpu_utilisation",
    "cpu_tdp_time_j",
    "cpu_tdp_ratio",
    "dram_j",
    "dram_j_low",
    "dram_j_high",
    "dram_method",
    "dram_scope",
    "energy_j",
    "energy_j_low",
    "energy_j_high",
    "wall_j",
    "wall_method",
    "wall_scope",
    "wall_device",
    "wall_ratio",
    "wall_tdp_time_j",
    "wall_tdp_ratio",
    "idle_baseline_s",
    "idle_w",
    "dynamic_j",
    "pue",
    "pue_name",
    "energy_j_pue",
    "energy_kwh_pue",
    "intensity_g_per_kwh",
    "intensity_code",
    "intensity_source",
    "co2e_g",
    "sections",
    "notes",
)
_TEXT_COLUMNS = frozenset(
    (
        "timestamp",
        "label",
        "hostname",
        "git_commit",
        "project_commit",
        "tool_version",
        "command",
        "gpu_method",
        "gpu_scope",
        "gpu_devices",
        "cpu_method",
        "cpu_scope",
        "cpu_device",
        "cpu_tdp_match",
        "dram_method",
        "dram_scope",
        "wall_method",
        "wall_scope",
        "wall_device",
        "pue_name",
        "intensity_code",
        "intensity_source",
        "sections",
        "notes",
    )
)


def append_record(record: EnergyRecord, path: str | Path | None = None) -> Path:
    """Append one row to the CSV log (header written once, when the file is new or empty).

    Appends are locked (``fcntl.flock``) so parallel runs never interleave rows. A file whose
    header differs from :data:`RECORD_COLUMNS` (a log written by an older version, or another CSV)
    raises ``ValueError`` with a one-line message saying how to start a new log; nothing is written
    to it, so old rows are never mixed with rows of another layout or overwritten.
    """
    path = Path(path) if path is not None else DEFAULT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="", encoding="utf-8") as f:
        with _locked(f):
            f.seek(0)
            header = f.readline().rstrip("\r\n")
            if header and header != ",".join(RECORD_COLUMNS):
                raise ValueError(_refusal(path, header))
            f.seek(0, 2)
            writer = csv.DictWriter(f, fieldnames=RECORD_COLUMNS)
            if not header:
                writer.writeheader()
            writer.writerow(record.row())
    return path


def _refusal(path: Path, header: str) -> str:
    """One line: why ``path`` is refused and how to start a new log without losing it."""
    theirs = header.split(",")
    if theirs[:2] == list(RECORD_COLUMNS[:2]):
        n_new = len(RECORD_COLUMNS)
        what = f"an energy log with an older column layout ({len(theirs)} columns, this version writes {n_new})"
    else:
        what = f"not an energy log of this version (header starts {','.join(theirs[:3])!r})"
    return (
        f"append_record: {path} is {what}; nothing was written to it. Start a new log: move it aside "
        f"(mv {path} {path}.old) or pass another path (log=... / --log PATH)"
    )


@contextlib.contextmanager
def _locked(f: Any) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_records(path: str | Path | None = None):
    """The energy log as a pandas DataFrame with :data:`RECORD_COLUMNS` (FileNotFoundError if absent).

    A log written with an older layout loads too: the columns it lacks are added, empty (``""``
    for text, NaN for numbers), so code written against :data:`RECORD_COLUMNS` reads every log;
    columns this version does not know are kept after them.
    """
    import pandas as pd

    path = Path(path) if path is not None else DEFAULT_LOG
    if not path.exists():
        raise FileNotFoundError(f"read_records: no energy log at {path}")
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    # Text columns keep '' (e.g. no GPU method); numeric columns read '' as NaN (e.g. no GPU joules).
    text = {c: str for c in header if c in _TEXT_COLUMNS}
    numeric = {c: ["", "nan", "NaN"] for c in header if c not in text}
    df = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=numeric)
    missing = [c for c in RECORD_COLUMNS if c not in df.columns]
    for c in missing:
        df[c] = pd.Series([""] * len(df), index=df.index, dtype=str) if c in _TEXT_COLUMNS else float("nan")
    if missing:
        df = df[[*RECORD_COLUMNS, *(c for c in df.columns if c not in RECORD_COLUMNS)]]
    return df
