"""Energy records and the tidy CSV log they append to (one row per measured block).

:class:`EnergyRecord` is what :class:`waveflow.energy.EnergyMeter` returns; :func:`append_record`
writes it as one row of :data:`RECORD_COLUMNS` (stable, so notebooks can rely on them) and
:func:`read_records` loads the log as a DataFrame.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .paths import RESULTS, ROOT

DEFAULT_LOG = RESULTS / "energy_log.csv"
KINDS = ("gpu", "cpu", "dram")

#: Columns of the energy log, in order; one row per measured block. Joules are without PUE.
RECORD_COLUMNS: tuple[str, ...] = (
    "timestamp", "label", "hostname", "git_commit", "command", "exit_code", "wall_s",
    "gpu_j", "gpu_method", "gpu_devices", "cpu_j", "cpu_method", "cpu_device", "cpu_tdp_w",
    "cpu_tdp_match", "cpu_utilisation", "dram_j", "dram_method",
    "energy_j", "pue", "pue_name", "energy_j_pue", "energy_kwh_pue",
    "intensity_g_per_kwh", "intensity_code", "intensity_source", "co2e_g", "sections", "notes",
)
_TEXT_COLUMNS = frozenset((
    "timestamp", "label", "hostname", "git_commit", "command", "gpu_method", "gpu_devices", "cpu_method",
    "cpu_device", "cpu_tdp_match", "dram_method", "pue_name", "intensity_code", "intensity_source", "sections", "notes",
))


@dataclass
class ComponentEnergy:
    """Energy of one device over the block: ``kind`` is gpu/cpu/dram, ``method`` a METHOD_* label."""

    kind: str
    device: str
    joules: float
    method: str


@dataclass
class Interval:
    """A section (``with meter.section``) or the span between two marks; seconds from the start."""

    label: str
    start_s: float
    end_s: float
    joules: dict[str, float]  # per kind, without PUE

    @property
    def total_j(self) -> float:
        return sum(self.joules.values())


@dataclass
class EnergyRecord:
    """Everything measured for one block, plus the conversion factors used."""

    label: str
    timestamp: str
    wall_s: float
    components: list[ComponentEnergy]
    cpu_device: str
    cpu_tdp_w: float  # NaN when the CPU was measured (RAPL) rather than estimated
    cpu_tdp_match: str
    cpu_utilisation: float
    pue: float
    pue_name: str
    pue_source: str
    intensity_code: str
    intensity_g_per_kwh: float
    intensity_source: str
    sections: list[Interval] = field(default_factory=list)
    marks: list[Interval] = field(default_factory=list)  # start of block -> each mark
    notes: list[str] = field(default_factory=list)
    hostname: str = ""
    git_commit: str = ""
    command: str = ""
    exit_code: int | None = None

    def joules(self, kind: str | None = None) -> float:
        """Joules without PUE, of one kind (gpu/cpu/dram) or all."""
        return sum(c.joules for c in self.components if kind is None or c.kind == kind)

    def method(self, kind: str) -> str:
        """The method label(s) of a kind, '' when it was not measured."""
        return ",".join(sorted({c.method for c in self.components if c.kind == kind}))

    @property
    def energy_j(self) -> float:
        return self.joules()

    @property
    def energy_j_pue(self) -> float:
        return self.energy_j * self.pue

    @property
    def energy_kwh_pue(self) -> float:
        return self.energy_j_pue / 3.6e6

    @property
    def co2e_g(self) -> float:
        """Grams CO2e: energy with PUE (kWh) x grid intensity (g/kWh)."""
        return self.energy_kwh_pue * self.intensity_g_per_kwh

    def row(self) -> dict[str, Any]:
        """The record as one row of :data:`RECORD_COLUMNS`."""
        devices = lambda k: "; ".join(c.device for c in self.components if c.kind == k)  # noqa: E731
        # An unmeasured kind is left empty, not 0 J, so "no GPU" never reads as "a GPU that used nothing".
        kind_j = lambda k: self.joules(k) if self.method(k) else ""  # noqa: E731
        sections = [{"label": s.label, "start_s": round(s.start_s, 4), "end_s": round(s.end_s, 4),
                     "joules": {k: round(v, 4) for k, v in s.joules.items()}} for s in self.sections]
        row = {
            "timestamp": self.timestamp, "label": self.label, "hostname": self.hostname,
            "git_commit": self.git_commit, "command": self.command,
            "exit_code": "" if self.exit_code is None else self.exit_code, "wall_s": self.wall_s,
            "gpu_j": kind_j("gpu"), "gpu_method": self.method("gpu"), "gpu_devices": devices("gpu"),
            "cpu_j": kind_j("cpu"), "cpu_method": self.method("cpu"), "cpu_device": self.cpu_device,
            "cpu_tdp_w": self.cpu_tdp_w, "cpu_tdp_match": self.cpu_tdp_match, "cpu_utilisation": self.cpu_utilisation,
            "dram_j": kind_j("dram"), "dram_method": self.method("dram"),
            "energy_j": self.energy_j, "pue": self.pue, "pue_name": self.pue_name,
            "energy_j_pue": self.energy_j_pue, "energy_kwh_pue": self.energy_kwh_pue,
            "intensity_g_per_kwh": self.intensity_g_per_kwh, "intensity_code": self.intensity_code,
            "intensity_source": self.intensity_source, "co2e_g": self.co2e_g,
            "sections": json.dumps(sections) if sections else "", "notes": " | ".join(self.notes),
        }
        assert tuple(row) == RECORD_COLUMNS
        return row


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository, '' without git or outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


# ------------------------------------------------------------------------------------------
# the log
def append_record(record: EnergyRecord, path: str | Path | None = None) -> Path:
    """Append one row to the CSV log (header written once, when the file is new or empty).

    Appends are locked (``fcntl.flock``) so parallel runs never interleave rows. A file whose
    header differs from :data:`RECORD_COLUMNS` raises ``ValueError`` instead of being mixed.
    """
    path = Path(path) if path is not None else DEFAULT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="", encoding="utf-8") as f:
        with _locked(f):
            f.seek(0)
            header = f.readline().rstrip("\r\n")
            if header and header != ",".join(RECORD_COLUMNS):
                raise ValueError(f"append_record: {path} has columns {header!r}; expected {','.join(RECORD_COLUMNS)!r}")
            f.seek(0, 2)
            writer = csv.DictWriter(f, fieldnames=RECORD_COLUMNS)
            if not header:
                writer.writeheader()
            writer.writerow(record.row())
    return path


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
    """The energy log as a pandas DataFrame with :data:`RECORD_COLUMNS` (FileNotFoundError if absent)."""
    import pandas as pd

    path = Path(path) if path is not None else DEFAULT_LOG
    if not path.exists():
        raise FileNotFoundError(f"read_records: no energy log at {path}")
    # Text columns keep '' (e.g. no GPU method); numeric columns read '' as NaN (e.g. no GPU joules).
    text = {c: str for c in RECORD_COLUMNS if c in _TEXT_COLUMNS}
    numeric = {c: ["", "nan", "NaN"] for c in RECORD_COLUMNS if c not in text}
    return pd.read_csv(path, dtype=text, keep_default_na=False, na_values=numeric)
