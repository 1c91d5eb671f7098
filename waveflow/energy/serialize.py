"""The JSON form of an energy record: every figure with its method, scope, bounds and provenance.

:meth:`EnergyRecord.to_dict <waveflow.energy.EnergyRecord.to_dict>` returns :func:`record_dict`;
:data:`JSON_SCHEMA` versions its keys. Values are strict JSON: :func:`finite` turns NaN and
infinities into ``None``, so ``json.dumps(..., allow_nan=False)`` never fails on a record whose
reader could not measure.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .units import KINDS, WALL

if TYPE_CHECKING:
    from .record import EnergyRecord

__all__ = ["JSON_SCHEMA", "finite", "record_dict"]

#: Version of the JSON form of a record (:meth:`EnergyRecord.to_dict`); it changes when a key changes meaning.
JSON_SCHEMA = 1


def finite(value: float) -> float | None:
    """A number for strict JSON: NaN and infinities become None."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def record_dict(record: EnergyRecord) -> dict[str, Any]:
    """The record as JSON-ready values; the keys are listed in :meth:`EnergyRecord.to_dict`."""
    kinds = [k for k in (*KINDS, WALL) if any(c.kind == k for c in record.components)]
    return {
        "schema": JSON_SCHEMA,
        "label": record.label,
        "timestamp": record.timestamp,
        "hostname": record.hostname,
        "command": record.command,
        "exit_code": record.exit_code,
        "wall_s": finite(record.wall_s),
        "components": [c.to_dict() for c in record.components],
        "energy": {
            "joules": finite(record.energy_j),
            "joules_low": finite(record.energy_j_low),
            "joules_high": finite(record.energy_j_high),
            "estimated": record.estimated,
            "scope": record.scope(),
            "methods": record.methods_label(),
            "joules_pue": finite(record.energy_j_pue),
            "kwh_pue": finite(record.energy_kwh_pue),
            "co2e_g": finite(record.co2e_g),
            "wall_meter_joules": finite(record.wall_j),
            "wall_meter_ratio": finite(record.wall_ratio),
            "idle_baseline_s": finite(record.idle_baseline_s),
            "idle_w": finite(record.idle_w),
            "dynamic_joules": finite(record.dynamic_j),
        },
        "by_kind": {
            k: {
                "joules": finite(record.joules(k)),
                "joules_low": finite(record.joules_bounds(k)[0]),
                "joules_high": finite(record.joules_bounds(k)[1]),
                "method": record.method(k),
                "scope": record.scope(k),
            }
            for k in kinds
        },
        "hardware": {
            "label": record.hardware_label(),
            "gpus": [c.device for c in record.components if c.kind == "gpu"],
            "cpu_device": record.cpu_device,
            "cpu_tdp_w": finite(record.cpu_tdp_w),
            "cpu_tdp_match": record.cpu_tdp_match,
            "cpu_w_per_thread": finite(record.cpu_w_per_thread),
            "cpu_threads": record.cpu_threads,
            "cpu_utilisation": finite(record.cpu_utilisation),
        },
        "tdp_time_checks": [c.to_dict() for c in record.tdp_checks()],
        "pue": {"value": finite(record.pue), "name": record.pue_name, "source": record.pue_source},
        "intensity": {
            "code": record.intensity_code,
            "g_per_kwh": finite(record.intensity_g_per_kwh),
            "source": record.intensity_source,
        },
        "provenance": {
            "project_commit": record.project_commit,
            "tool_version": record.tool_version,
            "git_commit": record.git_commit,
        },
        "sections": [s.to_dict() for s in record.sections],
        "marks": [m.to_dict() for m in record.marks],
        "notes": list(record.notes),
    }
