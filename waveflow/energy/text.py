"""The text form of an energy record: :func:`summary`, the screen a person reads after a run.

Each component is listed with its interval, method, scope and device, so an estimate never reads
as a measurement; then the totals with and without PUE, the wall-meter check, the dynamic energy
over the idle baseline, CO2e, the first sections and the record's notes. Each measured device
with a known TDP also gets the paper's check: what TDP × time would have said for the block, and
the measured figure's ratio to it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .units import J_PER_KWH

if TYPE_CHECKING:
    from .record import EnergyRecord

__all__ = ["summary"]


def _j(value: float) -> str:
    """Joules for the summary: three significant figures below 100 J, one decimal above."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def summary(record: EnergyRecord) -> str:
    """One screen of text: wall time, energy per component with interval, method and scope, totals, CO2.

    A component line reads ``cpu  12.3 J  [4.1, 61.0]  estimated:…  process-tree  <device>``; a
    measurement has no interval, and a ``check`` line of its own when its device has a TDP.
    """
    lines = [f"energy of {record.label or 'block'}: wall {record.wall_s:.2f} s"]
    for c in record.components:
        interval = f"[{_j(c.low)}, {_j(c.high)}]" if c.estimated and not math.isnan(c.low) else ""
        lines.append(f"  {c.kind:<5}{_j(c.joules):>9} J  {interval:<18}{c.method:<39}{c.scope:<14}{c.device}")
    if not record.components:
        lines.append("  (no component could be measured)")
    for check in record.tdp_checks():
        lines.append(
            f"  check {check.kind} {check.device}: TDP × time would say {_j(check.tdp_time_j)} J "
            f"({check.tdp_w:g} W from {check.tdp_source}); measured / that = {check.ratio:.3g}"
        )
    if not math.isnan(record.cpu_tdp_w):
        per = ""
        if not math.isnan(record.cpu_w_per_thread):
            threads = f" of {record.cpu_threads}" if record.cpu_threads else ""
            per = f", {record.cpu_w_per_thread:.3g} W per busy hardware thread{threads}"
        lines.append(
            f"  CPU TDP {record.cpu_tdp_w:g} W ({record.cpu_tdp_match}){per}, utilisation {record.cpu_utilisation:.1%}"
        )
    kwh = record.energy_j / J_PER_KWH
    interval = f" [{_j(record.energy_j_low)}, {_j(record.energy_j_high)}]" if record.estimated else ""
    lines.append(
        f"  total {_j(record.energy_j)} J{interval} ({record.scope() or 'nothing'}) = {kwh:.3e} kWh; "
        f"x PUE {record.pue:g} ({record.pue_name}) = {_j(record.energy_j_pue)} J = {record.energy_kwh_pue:.3e} kWh"
    )
    if not math.isnan(record.wall_j):
        lines.append(f"  wall meter / total = {record.wall_ratio:.3g}")
    if not math.isnan(record.idle_w):
        lines.append(
            f"  dynamic {_j(record.dynamic_j)} J = total - idle {record.idle_w:.3g} W x {record.wall_s:.2f} s "
            f"(idle measured over {record.idle_baseline_s:g} s before the block)"
        )
    lines.append(
        f"  CO2e {record.co2e_g:.3g} g at {record.intensity_g_per_kwh:g} g/kWh "
        f"({record.intensity_code}: {record.intensity_source})"
    )
    for s in record.sections[:10]:
        low, high = s.joules_bounds()
        interval = f" [{_j(low)}, {_j(high)}]" if s.estimated else ""
        lines.append(f"  section {s.label!r}: {s.end_s - s.start_s:.2f} s, {_j(s.total_j)} J{interval}")
    if len(record.sections) > 10:
        lines.append(f"  ... {len(record.sections) - 10} more sections")
    if record.project_commit or record.tool_version:
        project = record.project_commit or "not a git checkout"
        lines.append(f"  project commit {project}; measured with waveflow {record.tool_version or 'unknown'}")
    lines += [f"  note: {n}" for n in record.notes]
    return "\n".join(lines)
