"""Energy records: what one measured block used, per component, with the method behind each figure.

:class:`EnergyRecord` is what :class:`waveflow.energy.EnergyMeter` returns; it writes itself as one
row of the energy log's :data:`RECORD_COLUMNS` (the log, :func:`append_record` and
:func:`read_records`, lives in :mod:`~waveflow.energy.log`), and carries the method and hardware
labels that results tables quote. Its JSON form (:meth:`EnergyRecord.to_dict`,
:meth:`EnergyRecord.to_json`) is built in :mod:`~waveflow.energy.serialize`, its text
:func:`summary` in :mod:`~waveflow.energy.text`, and the units and kinds it counts in are
:mod:`~waveflow.energy.units`; every name of those is importable from here too.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..paths import ROOT
from .log import DEFAULT_LOG, RECORD_COLUMNS, append_record, read_records
from .provenance import tool_version
from .serialize import JSON_SCHEMA, record_dict
from .serialize import finite as _finite
from .tdp_check import TdpCheck, tdp_checks
from .text import summary
from .units import J_PER_KWH, J_PER_WH, KINDS, WALL

__all__ = [
    "DEFAULT_LOG",
    "J_PER_KWH",
    "J_PER_WH",
    "JSON_SCHEMA",
    "KINDS",
    "RECORD_COLUMNS",
    "WALL",
    "ComponentEnergy",
    "EnergyRecord",
    "Interval",
    "TdpCheck",
    "append_record",
    "git_commit",
    "read_records",
    "summary",
]


@dataclass
class ComponentEnergy:
    """Energy of one device over the block.

    Args:
        kind: gpu/cpu/dram, or wall for a wall-meter check.
        device: what was measured.
        joules: the reported figure (the middle of the interval for an estimate).
        method: a ``measured:``/``estimated:`` label.
        scope: ``device`` (everything on the device, idle and other processes included) or
            ``process-tree`` (only the measured processes' share); default: from the method.
        low: lower bound of an estimate (NaN for a measurement: no interval is modelled).
        high: upper bound of an estimate (NaN for a measurement).
        tdp_w: for a measurement, the power the paper's TDP × time method would assume for the
            device (NaN when it has none, e.g. DRAM); see :mod:`~waveflow.energy.tdp_check`.
        tdp_source: where ``tdp_w`` comes from.
    """

    kind: str
    device: str
    joules: float
    method: str
    scope: str = ""
    low: float = math.nan
    high: float = math.nan
    tdp_w: float = math.nan
    tdp_source: str = ""

    def __post_init__(self) -> None:
        if not self.scope:  # built without one: an estimate covers its process tree, a measurement its device
            self.scope = "process-tree" if self.estimated else "device"

    @property
    def estimated(self) -> bool:
        return self.method.startswith("estimated:")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``; a measurement's bounds are its value."""
        if self.estimated and not (math.isnan(self.low) or math.isnan(self.high)):
            return self.low, self.high
        return self.joules, self.joules

    def to_dict(self) -> dict[str, Any]:
        """The component as JSON-ready values; ``low``/``high`` are its :attr:`bounds` (a measurement's
        equal its value), ``tdp_w``/``tdp_source`` the TDP × time method's power for it, and NaN becomes
        ``None``."""
        low, high = self.bounds
        return {
            "kind": self.kind,
            "device": self.device,
            "joules": _finite(self.joules),
            "joules_low": _finite(low),
            "joules_high": _finite(high),
            "method": self.method,
            "scope": self.scope,
            "estimated": self.estimated,
            "tdp_w": _finite(self.tdp_w),
            "tdp_source": self.tdp_source,
        }


@dataclass
class Interval:
    """A section or window (``meter.section``, ``meter.window``) or the span from the start to a mark.

    Args:
        label: the name given to the section, window or mark.
        start_s: seconds from the meter's start to the beginning of the span.
        end_s: seconds from the meter's start to its end.
        joules: joules per kind (gpu/cpu/dram), without PUE.
        components: the per-device figures behind ``joules``, each with its method, scope and bounds;
            empty for an interval rebuilt without them (e.g. summed over the ranks of a run), whose
            bounds are then its value.
    """

    label: str
    start_s: float
    end_s: float
    joules: dict[str, float]  # per kind, without PUE
    components: tuple[ComponentEnergy, ...] = ()

    @property
    def total_j(self) -> float:
        """Joules of all kinds, without PUE."""
        return sum(self.joules.values())

    @property
    def seconds(self) -> float:
        """Length of the span."""
        return self.end_s - self.start_s

    def joules_bounds(self, kind: str | None = None) -> tuple[float, float]:
        """``(low, high)`` joules of one kind or of the total; measured parts count at their value."""
        if not self.components:
            value = self.total_j if kind is None else self.joules.get(kind, 0.0)
            return value, value
        parts = [c for c in self.components if kind is None or c.kind == kind]
        return sum(c.bounds[0] for c in parts), sum(c.bounds[1] for c in parts)

    @property
    def estimated(self) -> bool:
        """True when some part is an estimate (the span's total then has a real interval)."""
        return any(c.estimated for c in self.components)

    def methods(self) -> dict[str, str]:
        """Method label(s) per kind, e.g. ``{"cpu": "measured:rapl"}`` (empty without components)."""
        return {k: ",".join(sorted({c.method for c in self.components if c.kind == k})) for k in self._kinds()}

    def scopes(self) -> dict[str, str]:
        """Scope(s) per kind, e.g. ``{"gpu": "device", "cpu": "process-tree"}`` (empty without components)."""
        return {k: ",".join(sorted({c.scope for c in self.components if c.kind == k})) for k in self._kinds()}

    def _kinds(self) -> list[str]:
        return list(dict.fromkeys(c.kind for c in self.components))

    def cell(self) -> dict[str, Any]:
        """The interval as one entry of the log's ``sections`` JSON cell.

        ``label``, ``start_s``, ``end_s`` and ``joules`` (per kind) are the cell's original keys and
        keep their meaning; ``low``, ``high``, ``methods`` and ``scopes`` (per kind) follow when the
        interval knows its components, so a reader of the original keys reads every log.
        """
        entry: dict[str, Any] = {
            "label": self.label,
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "joules": {k: round(v, 4) for k, v in self.joules.items()},
        }
        if self.components:
            bounds = {k: self.joules_bounds(k) for k in self._kinds()}
            entry["low"] = {k: round(lo, 4) for k, (lo, _) in bounds.items()}
            entry["high"] = {k: round(hi, 4) for k, (_, hi) in bounds.items()}
            entry["methods"] = self.methods()
            entry["scopes"] = self.scopes()
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The interval as JSON-ready values: times, total with bounds, joules per kind and per component."""
        low, high = self.joules_bounds()
        return {
            "label": self.label,
            "start_s": _finite(self.start_s),
            "end_s": _finite(self.end_s),
            "seconds": _finite(self.seconds),
            "joules": _finite(self.total_j),
            "joules_low": _finite(low),
            "joules_high": _finite(high),
            "by_kind": {k: _finite(v) for k, v in self.joules.items()},
            "components": [c.to_dict() for c in self.components],
        }


@dataclass
class EnergyRecord:
    """Everything measured for one block, plus the conversion factors used.

    Provenance: ``git_commit`` is the commit of the waveflow checkout that measured (the tool's
    code), ``project_commit`` the commit of the repository the block ran in (the user's code, from
    the working directory; ``-dirty`` when it had uncommitted changes, ``""`` outside a repository)
    and ``tool_version`` waveflow's version. :meth:`to_dict` and :meth:`to_json` give the whole
    record as JSON, :meth:`row` as one row of the CSV log.
    """

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
    cpu_w_per_thread: float = math.nan  # W per busy logical CPU used by the estimate's middle figure
    cpu_threads: int | None = None  # hardware threads per package behind it, when known
    idle_baseline_s: float = math.nan  # seconds of idle measured before the block (NaN: not asked for)
    idle_w: float = math.nan  # mean power over that idle span, all components but the wall meter
    project_commit: str = ""  # commit of the working directory's repository, "-dirty" appended; "" outside one
    tool_version: str = field(default_factory=tool_version)  # the waveflow version that built the record

    def _parts(self, kind: str | None) -> list[ComponentEnergy]:
        if kind is None:
            return [c for c in self.components if c.kind != WALL]
        return [c for c in self.components if c.kind == kind]

    def joules(self, kind: str | None = None) -> float:
        """Joules without PUE, of one kind (gpu/cpu/dram/wall) or of all but the wall meter."""
        return sum(c.joules for c in self._parts(kind))

    def joules_bounds(self, kind: str | None = None) -> tuple[float, float]:
        """``(low, high)`` joules of one kind or of the total; measured parts count at their value."""
        parts = self._parts(kind)
        return sum(c.bounds[0] for c in parts), sum(c.bounds[1] for c in parts)

    def method(self, kind: str) -> str:
        """The method label(s) of a kind, '' when it was not measured."""
        return ",".join(sorted({c.method for c in self.components if c.kind == kind}))

    def scope(self, kind: str | None = None) -> str:
        """The scope(s) of a kind or of the total, '' when nothing was measured."""
        return ",".join(sorted({c.scope for c in self._parts(kind)}))

    @property
    def estimated(self) -> bool:
        """True when some part of the total is an estimate (the total then has a real interval)."""
        return any(c.estimated for c in self._parts(None))

    @property
    def energy_j(self) -> float:
        return self.joules()

    @property
    def energy_j_low(self) -> float:
        return self.joules_bounds()[0]

    @property
    def energy_j_high(self) -> float:
        return self.joules_bounds()[1]

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

    @property
    def wall_j(self) -> float:
        """The wall meter's joules over the window (NaN without a wall-meter figure)."""
        return self.joules(WALL) if self._parts(WALL) else math.nan

    @property
    def wall_ratio(self) -> float:
        """Wall-meter joules / the sum of the other components (NaN without both)."""
        return self.wall_j / self.energy_j if self.energy_j > 0 else math.nan

    @property
    def dynamic_j(self) -> float:
        """Total minus the idle power measured before the block x the block's duration (NaN without a baseline)."""
        return self.energy_j - self.idle_w * self.wall_s

    def tdp_checks(self) -> list[TdpCheck]:
        """Each measured component next to what the paper's TDP × time method would say for the block.

        One :class:`~waveflow.energy.tdp_check.TdpCheck` per measured GPU, CPU package and wall
        meter with a known TDP, over ``wall_s``; none for a record without a measured component.
        """
        return tdp_checks(self.components, self.wall_s)

    def _tdp_columns(self, kind: str) -> dict[str, Any]:
        # Summed over the kind's checked components: TDP x time, and measured / that (empty: no check).
        checks = [c for c in self.tdp_checks() if c.kind == kind]
        tdp_time_j = sum(c.tdp_time_j for c in checks)
        if not checks or not tdp_time_j > 0:
            return {f"{kind}_tdp_time_j": "", f"{kind}_tdp_ratio": ""}
        return {f"{kind}_tdp_time_j": tdp_time_j, f"{kind}_tdp_ratio": sum(c.measured_j for c in checks) / tdp_time_j}

    def methods_label(self) -> str:
        """``"measured:rapl + estimated:tdp×utilisation"``-style summary of how the total was obtained."""
        methods = sorted({c.method for c in self._parts(None) if not math.isnan(c.joules)})
        return " + ".join(methods) if methods else "none"

    def hardware_label(self) -> str:
        """The devices behind the record, e.g. ``"1 x NVIDIA TITAN V; AMD EPYC 7232P"``."""
        gpus = [c.device for c in self.components if c.kind == "gpu"]
        parts = [f"{len(gpus)} x {gpus[0]}"] if gpus else []
        return "; ".join(parts + [self.cpu_device]) if self.cpu_device else "; ".join(parts)

    def _devices(self, kind: str) -> str:
        return "; ".join(c.device for c in self.components if c.kind == kind)

    def _kind_columns(self, kind: str) -> dict[str, Any]:
        # An unmeasured kind is left empty, not 0 J, so "no GPU" never reads as "a GPU that used nothing";
        # a measured kind has no modelled interval, so its bounds are empty too.
        if not self.method(kind):
            return {f"{kind}_j": "", f"{kind}_j_low": "", f"{kind}_j_high": ""}
        estimated = any(c.estimated for c in self._parts(kind))
        low, high = self.joules_bounds(kind)
        return {
            f"{kind}_j": self.joules(kind),
            f"{kind}_j_low": low if estimated else "",
            f"{kind}_j_high": high if estimated else "",
        }

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (NaN becomes ``None``): what was measured, how, and with
        which factors and code.

        Keys: ``schema`` (:data:`JSON_SCHEMA`), ``label``, ``timestamp``, ``hostname``, ``command``,
        ``exit_code``, ``wall_s``; ``components`` (each with method, scope and bounds); ``energy``
        (totals with bounds, scope, methods, PUE-weighted figures, CO2e, the wall-meter check and
        the idle baseline); ``by_kind`` (joules, bounds, method and scope per gpu/cpu/dram/wall);
        ``hardware`` (devices, CPU TDP and utilisation); ``tdp_time_checks`` (:meth:`tdp_checks`: each
        measured component against TDP × time); ``pue``; ``intensity``; ``provenance``
        (``project_commit``, ``tool_version``, ``git_commit``); ``sections``; ``marks``; ``notes``.
        """
        return record_dict(self)

    def to_json(self, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text (no NaN), on one line unless ``indent`` is given.

        Args:
            indent: spaces per nesting level; None writes one line (one record per line of a file).
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def row(self) -> dict[str, Any]:
        """The record as one row of :data:`RECORD_COLUMNS`."""
        sections = [s.cell() for s in self.sections]
        nan_empty = _nan_empty
        row = {
            "timestamp": self.timestamp,
            "label": self.label,
            "hostname": self.hostname,
            "git_commit": self.git_commit,
            "project_commit": self.project_commit,
            "tool_version": self.tool_version,
            "command": self.command,
            "exit_code": "" if self.exit_code is None else self.exit_code,
            "wall_s": self.wall_s,
            **self._kind_columns("gpu"),
            "gpu_method": self.method("gpu"),
            "gpu_scope": self.scope("gpu"),
            "gpu_devices": self._devices("gpu"),
            **self._tdp_columns("gpu"),
            **self._kind_columns("cpu"),
            "cpu_method": self.method("cpu"),
            "cpu_scope": self.scope("cpu"),
            "cpu_device": self.cpu_device,
            "cpu_tdp_w": self.cpu_tdp_w,
            "cpu_tdp_match": self.cpu_tdp_match,
            "cpu_w_per_thread": nan_empty(self.cpu_w_per_thread),
            "cpu_threads": "" if self.cpu_threads is None else self.cpu_threads,
            "cpu_utilisation": self.cpu_utilisation,
            **self._tdp_columns("cpu"),
            **self._kind_columns("dram"),
            "dram_method": self.method("dram"),
            "dram_scope": self.scope("dram"),
            "energy_j": self.energy_j,
            "energy_j_low": self.energy_j_low,
            "energy_j_high": self.energy_j_high,
            "wall_j": nan_empty(self.wall_j),
            "wall_method": self.method(WALL),
            "wall_scope": self.scope(WALL),
            "wall_device": self._devices(WALL),
            "wall_ratio": nan_empty(self.wall_ratio),
            **self._tdp_columns(WALL),
            "idle_baseline_s": nan_empty(self.idle_baseline_s),
            "idle_w": nan_empty(self.idle_w),
            "dynamic_j": nan_empty(self.dynamic_j),
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


def _nan_empty(value: float) -> float | str:
    return "" if isinstance(value, float) and math.isnan(value) else value


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
