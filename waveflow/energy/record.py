"""Energy records and the tidy CSV log they append to (one row per measured block).

:class:`EnergyRecord` is what :class:`waveflow.energy.EnergyMeter` returns; :func:`append_record`
writes it as one row of :data:`RECORD_COLUMNS` (stable, so notebooks can rely on them) and
:func:`read_records` loads the log as a DataFrame. Everything that formats a record lives here
too: the text :func:`summary`, and the method and hardware labels that results tables carry.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import RESULTS, ROOT

DEFAULT_LOG = RESULTS / "energy_log.csv"
#: Joules in a kilowatt-hour: the one conversion factor between the meter's J and the paper's kWh/Wh.
J_PER_KWH = 3.6e6
J_PER_WH = 3.6e3

#: Columns of the energy log, in order; one row per measured block. Joules are without PUE.
RECORD_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "label",
    "hostname",
    "git_commit",
    "command",
    "exit_code",
    "wall_s",
    "gpu_j",
    "gpu_method",
    "gpu_devices",
    "cpu_j",
    "cpu_method",
    "cpu_device",
    "cpu_tdp_w",
    "cpu_tdp_match",
    "cpu_utilisation",
    "dram_j",
    "dram_method",
    "energy_j",
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
        "command",
        "gpu_method",
        "gpu_devices",
        "cpu_method",
        "cpu_device",
        "cpu_tdp_match",
        "dram_method",
        "pue_name",
        "intensity_code",
        "intensity_source",
        "sections",
        "notes",
    )
)


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
        return self.energy_j_pue / J_PER_KWH

    @property
    def co2e_g(self) -> float:
        """Grams CO2e: energy with PUE (kWh) x grid intensity (g/kWh)."""
        return self.energy_kwh_pue * self.intensity_g_per_kwh

    def methods_label(self) -> str:
        """``"measured:rapl + estimated:tdp×utilisation"``-style summary of how the record was obtained."""
        methods = sorted({c.method for c in self.components if not math.isnan(c.joules)})
        return " + ".join(methods) if methods else "none"

    def hardware_label(self) -> str:
        """The devices behind the record, e.g. ``"1 x NVIDIA TITAN V; AMD EPYC 7232P"``."""
        gpus = [c.device for c in self.components if c.kind == "gpu"]
        parts = [f"{len(gpus)} x {gpus[0]}"] if gpus else []
        return "; ".join(parts + [self.cpu_device]) if self.cpu_device else "; ".join(parts)

    def _devices(self, kind: str) -> str:
        return "; ".join(c.device for c in self.components if c.kind == kind)

    def _kind_j(self, kind: str) -> float | str:
        # An unmeasured kind is left empty, not 0 J, so "no GPU" never reads as "a GPU that used nothing".
        return self.joules(kind) if self.method(kind) else ""

    def row(self) -> dict[str, Any]:
        """The record as one row of :data:`RECORD_COLUMNS`."""
        devices, kind_j = self._devices, self._kind_j
        sections = [
            {
                "label": s.label,
                "start_s": round(s.start_s, 4),
                "end_s": round(s.end_s, 4),
                "joules": {k: round(v, 4) for k, v in s.joules.items()},
            }
            for s in self.sections
        ]
        row = {
            "timestamp": self.timestamp,
            "label": self.label,
            "hostname": self.hostname,
            "git_commit": self.git_commit,
            "command": self.command,
            "exit_code": "" if self.exit_code is None else self.exit_code,
            "wall_s": self.wall_s,
            "gpu_j": kind_j("gpu"),
            "gpu_method": self.method("gpu"),
            "gpu_devices": devices("gpu"),
            "cpu_j": kind_j("cpu"),
            "cpu_method": self.method("cpu"),
            "cpu_device": self.cpu_device,
            "cpu_tdp_w": self.cpu_tdp_w,
            "cpu_tdp_match": self.cpu_tdp_match,
            "cpu_utilisation": self.cpu_utilisation,
            "dram_j": kind_j("dram"),
            "dram_method": self.method("dram"),
            "energy_j": self.energy_j,
            "pue": self.pue,
            "pue_name": self.pue_name,
            "energy_j_pue": self.energy_j_pue,
            "energy_kwh_pue": self.energy_kwh_pue,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "intensity_code": self.intensity_code,
            "intensity_source": self.intensity_source,
            "co2e_g": self.co2e_g,
            "sections": json.dumps(sections) if sections else "",
            "notes": " | ".join(self.notes),
        }
        if tuple(row) != RECORD_COLUMNS:  # a schema guard that survives ``python -O``
            raise RuntimeError(f"EnergyRecord.row: columns {tuple(row)} differ from RECORD_COLUMNS")
        return row


def summary(record: EnergyRecord) -> str:
    """One screen of text: wall time, energy per component and method, totals, CO2."""
    lines = [f"energy of {record.label or 'block'}: wall {record.wall_s:.2f} s"]
    for c in record.components:
        lines.append(f"  {c.kind:<5}{c.joules:>12.1f} J  {c.method:<27} {c.device}")
    if not record.components:
        lines.append("  (no component could be measured)")
    if not math.isnan(record.cpu_tdp_w):
        lines.append(
            f"  CPU TDP {record.cpu_tdp_w:g} W ({record.cpu_tdp_match}), utilisation {record.cpu_utilisation:.1%}"
        )
    kwh = record.energy_j / J_PER_KWH
    lines.append(
        f"  total {record.energy_j:.1f} J = {kwh:.3e} kWh; x PUE {record.pue:g} ({record.pue_name}) "
        f"= {record.energy_j_pue:.1f} J = {record.energy_kwh_pue:.3e} kWh"
    )
    lines.append(
        f"  CO2e {record.co2e_g:.3g} g at {record.intensity_g_per_kwh:g} g/kWh "
        f"({record.intensity_code}: {record.intensity_source})"
    )
    for s in record.sections[:10]:
        lines.append(f"  section {s.label!r}: {s.end_s - s.start_s:.2f} s, {s.total_j:.1f} J")
    if len(record.sections) > 10:
        lines.append(f"  ... {len(record.sections) - 10} more sections")
    lines += [f"  note: {n}" for n in record.notes]
    return "\n".join(lines)


@functools.lru_cache(maxsize=4)
def git_commit(short: bool = False, dirty: bool = False) -> str:
    """The repository's HEAD commit ('' without git or outside a checkout).

    Args:
        short: the abbreviated hash instead of the full one.
        dirty: append ``-dirty`` when tracked files differ from HEAD, so that a result made from
            uncommitted code never claims a commit it did not come from.
    """
    args = ["git", "rev-parse", "--short=12", "HEAD"] if short else ["git", "rev-parse", "HEAD"]
    try:
        out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return ""
        commit = out.stdout.strip()
        if dirty:
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            )
            if status.returncode == 0 and status.stdout.strip():
                commit += "-dirty"
        return commit
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
