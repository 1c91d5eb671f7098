"""The paper's estimate against the meter: what TDP × time would have said for each measured device.

Douwes et al. estimate a training run's energy as the GPUs' TDP × their number × the hours (Table 1,
:func:`~waveflow.energy.hardware.estimate_training_energy`), and checked that method once against a
metered run (SING: 64.8 kWh metered against 52 kWh estimated, 1.25×). The meter makes the same
check on every record that has a measured component, over the record's own window:

* an NVML-metered **GPU**: its TDP from ``gpus.csv`` matched by the name NVML reports
  (:func:`~waveflow.energy.hardware.lookup_gpu`), else NVML's enforced power limit;
* a RAPL-metered **CPU package**: the package TDP (the user's ``cpu_tdp_w``, else the
  ``cpu_power.csv`` row of the CPU's brand, else the zone's RAPL long-term power limit, else the
  table's family or whole-table median), one TDP per package zone; die zones of one package that are
  distinct counters share it;
* a **wall meter**: the sum of those TDPs over the machine, every GPU and every CPU package, the
  whole-machine form of the method.

DRAM has no term in the method, so a RAPL dram zone gets no check; an estimated component none
either (an estimate compared with a TDP it was itself built from says nothing). Each check gives
``measured / (TDP × seconds)``: below 1 when the device ran under its TDP, as the paper's method
assumes the worst case; the SING figure, 1.25, counted the whole machine and a PUE.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import readers as er
from .serialize import finite

if TYPE_CHECKING:
    from .record import ComponentEnergy

__all__ = ["TdpCheck", "assign_tdps", "cpu_package_tdp", "gpu_tdp", "tdp_checks"]

_DIE_ZONE = re.compile(r"^(package-\d+)-die-\d+\b")


@dataclass(frozen=True)
class TdpCheck:
    """One measured component next to what TDP × time would have said for the same window.

    Args:
        kind: gpu, cpu or wall.
        device: the component's device.
        measured_j: what the meter measured over the window.
        seconds: the window's wall-clock length.
        tdp_w: the power the method assumes for the device (W).
        tdp_source: where ``tdp_w`` comes from.
    """

    kind: str
    device: str
    measured_j: float
    seconds: float
    tdp_w: float
    tdp_source: str

    @property
    def tdp_time_j(self) -> float:
        """TDP × the window's seconds: the paper's Table 1 method over this window."""
        return self.tdp_w * self.seconds

    @property
    def ratio(self) -> float:
        """Measured / TDP × time (NaN for a window of no length)."""
        return self.measured_j / self.tdp_time_j if self.tdp_time_j > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values (NaN becomes ``None``)."""
        return {
            "kind": self.kind,
            "device": self.device,
            "measured_joules": finite(self.measured_j),
            "seconds": finite(self.seconds),
            "tdp_w": finite(self.tdp_w),
            "tdp_source": self.tdp_source,
            "tdp_time_joules": finite(self.tdp_time_j),
            "ratio": finite(self.ratio),
        }


def tdp_checks(components: Sequence[ComponentEnergy], seconds: float) -> list[TdpCheck]:
    """The check of every measured component that has a TDP, over a window of ``seconds``.

    RAPL die zones of one package that remain after mirrored zones were dropped are distinct
    counters of one package, so each is held against its share of the package's TDP.
    """
    dies = Counter(m.group(1) for c in components if c.kind == "cpu" and (m := _DIE_ZONE.match(c.device)))
    out = []
    for c in components:
        if c.estimated or not math.isfinite(c.tdp_w) or not math.isfinite(c.joules):
            continue
        tdp_w, source = c.tdp_w, c.tdp_source
        m = _DIE_ZONE.match(c.device) if c.kind == "cpu" else None
        if m and dies[m.group(1)] > 1:
            tdp_w, source = tdp_w / dies[m.group(1)], f"{source}, shared by {dies[m.group(1)]} die counters"
        out.append(TdpCheck(c.kind, c.device, c.joules, seconds, tdp_w, source))
    return out


def gpu_tdp(name: str, power_limit_w: float = math.nan) -> tuple[float, str]:
    """``(W, source)`` for a GPU NVML names: its ``gpus.csv`` TDP, else NVML's enforced power limit.

    The table's TDP is the paper's figure (a board's specified maximum); NVML's enforced limit is
    what the board is allowed now, which an administrator may have lowered, so it is only the
    fallback, and a limit that differs from the table is said beside it.

    Args:
        name: the GPU's name as NVML reports it (``"Tesla V100-SXM2-16GB"``).
        power_limit_w: NVML's enforced power limit in W (NaN when unreadable).
    """
    from .hardware import lookup_gpu  # pandas-free; imported here so the readers need no table at import

    try:
        gpu = lookup_gpu(name)
    except (ValueError, OSError):
        if math.isfinite(power_limit_w) and power_limit_w > 0:
            return power_limit_w, f"NVML enforced power limit ({name!r} is not in gpus.csv)"
        return math.nan, ""
    source = f"gpus.csv: {gpu.name}"
    if math.isfinite(power_limit_w) and abs(power_limit_w - gpu.tdp_w) >= 1:
        source += f"; NVML enforces {power_limit_w:g} W"
    return gpu.tdp_w, source


def cpu_package_tdp(
    user_w: float | None = None, known: er.CpuTdp | None = None, power_limit_w: float = math.nan
) -> tuple[float, str]:
    """``(W, source)`` of one CPU package for the method: the user's, the table's model row, RAPL's limit, a median.

    Args:
        user_w: the user's ``cpu_tdp_w``.
        known: the brand's lookup when already made (the estimate's); None looks the brand up,
            narrowing a bare brand's family by the CPU's flags.
        power_limit_w: the package zone's RAPL long-term power limit (NaN when unreadable), used
            when the table has no row of the CPU's model.
    """
    if user_w is not None:
        return float(user_w), "the user's cpu_tdp_w"
    tdp = known if known is not None and known.match != "override" else None
    if tdp is None:
        tdp = er.lookup_cpu_tdp(er.cpu_brand(), flags=er.cpu_info().flags)
    if tdp.match in ("exact", "model"):
        return tdp.tdp_w, f"cpu_power.csv: {tdp.matched_name}"
    if math.isfinite(power_limit_w) and power_limit_w > 0:
        return power_limit_w, f"RAPL long-term power limit ({tdp.brand!r} has no row in cpu_power.csv)"
    return tdp.tdp_w, f"cpu_power.csv, {tdp.match} match: {tdp.matched_name}"


def assign_tdps(
    readers: Iterable[er.EnergyReader], user_w: float | None, known: er.CpuTdp | None, machine: bool = False
) -> tuple[float, str]:
    """Give each measured GPU and CPU-package reader the TDP the method would use; never raises.

    Args:
        readers: the meter's readers; NVML and RAPL package readers gain ``tdp_w`` and ``tdp_source``.
        user_w: the user's ``cpu_tdp_w``.
        known: the CPU estimate's TDP lookup, when the CPU is estimated.
        machine: also return the whole machine's TDP (for a wall meter).

    Returns:
        ``(W, source)`` of the whole machine, every GPU's TDP plus every CPU package's, when
        ``machine`` is set and some TDP is known; ``(NaN, "")`` otherwise.
    """
    readers = list(readers)
    cpu: tuple[float, str] | None = None
    for r in readers:
        try:
            if isinstance(r, (er.NvmlEnergyCounter, er.NvmlPowerIntegrator)):
                r.tdp_w, r.tdp_source = gpu_tdp(r.name, r.power_limit_w)
            elif isinstance(r, er.RaplDomain) and r.kind == "cpu":
                cpu = cpu_package_tdp(user_w, known, r.power_limit_w)
                r.tdp_w, r.tdp_source = cpu
        except Exception:  # a table that cannot be read costs the check, never the measurement
            continue
    if not machine:
        return math.nan, ""
    try:
        cpu = cpu or cpu_package_tdp(user_w, known)
    except Exception:
        cpu = (math.nan, "")
    return _machine_tdp([r for r in readers if r.kind == "gpu"], cpu, er.cpu_info().packages)


def _machine_tdp(gpus: list[er.EnergyReader], cpu: tuple[float, str], packages: int) -> tuple[float, str]:
    parts, watts = [], 0.0
    known = [r.tdp_w for r in gpus if math.isfinite(r.tdp_w)]
    if known:
        watts += sum(known)
        parts.append(f"{len(known)} GPU TDP(s) {sum(known):g} W")
    if math.isfinite(cpu[0]):
        watts += packages * cpu[0]
        parts.append(f"{packages} x CPU package {cpu[0]:g} W ({cpu[1]})")
    source = " + ".join(parts)
    if len(known) < len(gpus):
        source += f"; {len(gpus) - len(known)} GPU(s) without a TDP left out"
    return (watts, source) if watts > 0 else (math.nan, "")
