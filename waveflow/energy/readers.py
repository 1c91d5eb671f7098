"""Energy readers behind :class:`waveflow.energy.EnergyMeter`: RAPL, NVML, and the CPU estimate.

Every reader is an :class:`EnergyReader` with the same tiny interface: ``read() -> float`` returns the joules used since
the reader was built (a cumulative figure), so a meter can take snapshots at the start, at marks
and at the end of a block and subtract them. Readers that need periodic attention (power
polling, RAPL wrap-around) also have ``poll()`` and a ``poll_interval_s``; the meter runs one
background thread for them only when at least one reader asks for it.

Method labels (the ``method`` attribute) say how a number was obtained:

* ``measured:nvml-energy``: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` counter (mJ, Volta+);
* ``measured:nvml-power``: ``nvmlDeviceGetPowerUsage`` sampled in a thread and integrated
  (trapezoids) for GPUs without the counter, e.g. the paper-era TITAN/Pascal cards;
* ``measured:rapl``: ``/sys/class/powercap`` package and dram counters (Intel, and AMD Zen
  which exposes the same ``intel-rapl`` tree), wrap-around corrected with ``max_energy_range_uj``;
* ``estimated:tdp×utilisation``: the CPU's TDP times the CPU utilisation of the measured process
  tree. Not a measurement: used when RAPL is absent or unreadable (VMs, containers, non-root).
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METHOD_NVML_ENERGY = "measured:nvml-energy"
METHOD_NVML_POWER = "measured:nvml-power"
METHOD_RAPL = "measured:rapl"
METHOD_TDP_UTIL = "estimated:tdp×utilisation"

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
# NVML power readings are refreshed every ~20-100 ms (a 1 s average on Ampere and newer), so
# 10 Hz is the slowest rate that still follows a training step and costs nothing measurable.
DEFAULT_POLL_HZ = 10.0
# RAPL counters are 32-bit-ish (max_energy_range_uj ~ 2^32 uJ = 4.3 kJ on many Intel parts, up to
# 262 kJ on others): at 200 W a 4.3 kJ counter wraps every ~21 s, so poll well inside that.
RAPL_POLL_S = 5.0
# RAPL domains we add up. 'core'/'uncore' are parts of 'package' and 'psys' covers the whole SoC,
# so counting them too would double-count.
RAPL_DOMAINS = ("package", "dram")
_RAPL_DIR = re.compile(r"^(intel|amd)-rapl:\d+(:\d+)?$")


class EnergyReader:
    """What the meter needs of a reader: cumulative joules, plus optional periodic attention.

    Subclasses set ``kind`` (gpu/cpu/dram), ``device`` and ``method`` and implement
    :meth:`read`. ``poll_interval_s`` is None for readers that need no background thread; the
    meter starts its sampling thread only when some reader sets it.
    """

    kind: str = ""
    device: str = ""
    method: str = ""
    poll_interval_s: float | None = None

    def read(self) -> float:
        """Joules since the reader was built (cumulative)."""
        raise NotImplementedError

    def poll(self) -> None:
        """Fold a fresh sample into the running total (no-op for counters read on demand)."""

    def close(self) -> None:
        """Release what the reader holds (no-op by default)."""


# ------------------------------------------------------------------------------------------
# RAPL
class RaplDomain(EnergyReader):
    """One powercap domain (``intel-rapl:0`` = package-0, ``intel-rapl:0:2`` = dram, ...).

    Args:
        path: the domain folder holding ``name``, ``energy_uj`` and ``max_energy_range_uj``.
        read_text: how files are read; injectable so tests can raise ``PermissionError``.
    """

    method = METHOD_RAPL
    poll_interval_s: float | None = RAPL_POLL_S

    def __init__(self, path: Path, read_text: Callable[[Path], str] | None = None) -> None:
        self.path = Path(path)
        self._read_text = read_text or (lambda p: p.read_text())
        raw_name = self._read_text(self.path / "name").strip()  # "package-0", "dram"
        self.kind = "cpu" if raw_name.startswith("package") else raw_name
        self.device = f"{raw_name} ({self.path.name})"
        try:
            self.max_range_uj = int(self._read_text(self.path / "max_energy_range_uj"))
        except (OSError, ValueError):
            self.max_range_uj = 2**32  # the classic MSR width when the file is missing
        self._lock = threading.Lock()
        self._last = self._counter()  # raises PermissionError when energy_uj is root-only
        self._total_uj = 0

    def _counter(self) -> int:
        return int(self._read_text(self.path / "energy_uj"))

    def poll(self) -> None:
        """Fold the counter into the running total; must run at least once per wrap period."""
        with self._lock:
            now = self._counter()
            delta = now - self._last
            if delta < 0:  # wrapped: the counter restarted from 0 after max_energy_range_uj
                delta += self.max_range_uj
            self._total_uj += delta
            self._last = now

    def read(self) -> float:
        """Joules since construction."""
        self.poll()
        return self._total_uj / 1e6


def rapl_domains(
    root: str | os.PathLike | None = None, read_text: Callable[[Path], str] | None = None
) -> list[RaplDomain]:
    """The package and dram domains under a powercap root, readable or not.

    Returns an empty list when the root does not exist (VMs, macOS). ``PermissionError`` from a
    root-only ``energy_uj`` (Linux >= 5.10 default) propagates so the caller can fall back.
    """
    root = Path(root) if root is not None else DEFAULT_POWERCAP_ROOT
    if not root.is_dir():
        return []
    reader = read_text or (lambda p: p.read_text())
    domains = []
    for path in sorted(p for p in root.iterdir() if _RAPL_DIR.match(p.name)):
        try:
            name = reader(path / "name").strip()
        except FileNotFoundError:
            continue
        if name.startswith(RAPL_DOMAINS):
            domains.append(RaplDomain(path, reader))
    return domains


# ------------------------------------------------------------------------------------------
# NVML
class NvmlEnergyCounter(EnergyReader):
    """GPU energy from NVML's total-energy counter (mJ since the driver loaded; Volta and newer)."""

    method = METHOD_NVML_ENERGY
    poll_interval_s: float | None = None
    kind = "gpu"

    def __init__(self, nvml: Any, handle: Any, index: int, name: str) -> None:
        self._nvml, self._handle = nvml, handle
        self.device = f"gpu:{index} {name}"
        self._start_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def read(self) -> float:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start_mj) / 1e3


class NvmlPowerIntegrator(EnergyReader):
    """GPU energy by integrating ``nvmlDeviceGetPowerUsage`` (mW) sampled by the meter's thread.

    Trapezoidal integration between samples; ``read()`` takes a fresh sample, so the figure at the
    end of a block covers the block up to that instant.
    """

    method = METHOD_NVML_POWER
    kind = "gpu"

    def __init__(self, nvml: Any, handle: Any, index: int, name: str, poll_hz: float = DEFAULT_POLL_HZ) -> None:
        self._nvml, self._handle = nvml, handle
        self.device = f"gpu:{index} {name}"
        self.poll_interval_s: float | None = 1.0 / poll_hz
        self._lock = threading.Lock()
        self._t = time.perf_counter()
        self._w = nvml.nvmlDeviceGetPowerUsage(handle) / 1e3
        self._joules = 0.0
        self.samples = 1

    def poll(self) -> None:
        watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3
        with self._lock:
            now = time.perf_counter()
            self._joules += 0.5 * (watts + self._w) * (now - self._t)
            self._t, self._w = now, watts
            self.samples += 1

    def read(self) -> float:
        self.poll()
        return self._joules


def _visible_gpu_handles(nvml: Any) -> list[tuple[int, Any]]:
    """NVML handles of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` ints or UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
    if not visible.strip():  # set but empty: CUDA sees no GPU, so none is this process's
        return []
    out = []
    for pos, item in enumerate(x.strip() for x in visible.split(",")):
        if item.isdigit():
            out.append((int(item), nvml.nvmlDeviceGetHandleByIndex(int(item))))
        elif item.startswith(("GPU-", "MIG-")):
            out.append((pos, nvml.nvmlDeviceGetHandleByUUID(item)))
        else:  # CUDA stops at the first invalid entry; so do we
            break
    return out


def nvml_readers(nvml: Any, poll_hz: float = DEFAULT_POLL_HZ) -> tuple[list[Any], list[str]]:
    """One reader per visible GPU: the energy counter when supported, else power polling.

    Args:
        nvml: the ``pynvml`` module (or a fake with the same functions and ``NVMLError``);
            ``nvmlInit`` must already have succeeded.
        poll_hz: sampling rate for GPUs without the counter.

    Returns:
        ``(readers, notes)``: notes say which GPU fell back to what and why.
    """
    error = getattr(nvml, "NVMLError", Exception)
    readers, notes = [], []
    for index, handle in _visible_gpu_handles(nvml):
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            readers.append(NvmlEnergyCounter(nvml, handle, index, name))
            continue
        except error as exc:
            reason = f"{type(exc).__name__}: {exc}"
        try:
            readers.append(NvmlPowerIntegrator(nvml, handle, index, name, poll_hz))
            notes.append(f"gpu:{index} {name}: no NVML energy counter ({reason}); power sampled at {poll_hz:g} Hz")
        except error as exc:
            notes.append(
                f"gpu:{index} {name}: neither NVML energy nor power is readable ({type(exc).__name__}); not measured"
            )
    return readers, notes


# ------------------------------------------------------------------------------------------
# CPU: TDP table and the utilisation estimate
@dataclass(frozen=True)
class CpuTdp:
    """The TDP used for the CPU estimate and where it came from.

    ``match`` is one of ``"override"`` (user value), ``"exact"`` (the normalised brand equals a
    table name), ``"model"`` (the brand's model number picks one table row), ``"generic"`` (the
    brand has no model number, e.g. the KVM brand ``AMD EPYC``; the TDP is the median of the
    table rows of that family) and ``"default"`` (nothing matched; median of the whole table).
    """

    brand: str
    tdp_w: float
    match: str
    matched_name: str
    detail: str


def _parse_tdp(value: str) -> float:
    # carbontracker's table has a few ranges written "33.34.8" (= 33.3 to 34.8 W); take the midpoint.
    parts = value.strip().split(".")
    if len(parts) == 3:
        return (float(f"{parts[0]}.{parts[1]}") + float(f"{parts[0]}.{parts[2]}")) / 2
    return float(value)


@functools.lru_cache(maxsize=1)
def cpu_power_table() -> dict[str, float]:
    """``{name: TDP W}`` from carbontracker's bundled ``data/cpu_power.csv`` (3,923 rows)."""
    path = importlib.resources.files("carbontracker").joinpath("data", "cpu_power.csv")
    table = {}
    with path.open("r", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                table[row["Name"].strip()] = _parse_tdp(row["TDP"])
            except (ValueError, KeyError, AttributeError):
                continue
    return table


def _normalise(name: str) -> str:
    """Lower-case brand without trademarks, clock, core count and filler words."""
    s = name.lower().replace("(r)", " ").replace("(tm)", " ").replace("®", " ").replace("™", " ")
    s = re.sub(r"@.*$", " ", s)  # "@ 3.20GHz"
    s = re.sub(r"\(.*?\)", " ", s)  # "(Skylake, IBRS)"
    s = re.sub(r"\b\d+-core\b|\bprocessor\b|\bcpu\b|\bwith radeon.*$", " ", s)
    return " ".join(s.split())


def lookup_cpu_tdp(brand: str, table: dict[str, float] | None = None) -> CpuTdp:
    """Find the TDP of a CPU brand string in the TDP table, saying how good the match is.

    Unlike carbontracker's first-substring rule (which maps the bare KVM brand ``AMD EPYC`` to
    the first EPYC row, a 120 W 7232P), a brand without a model number is treated as a family and
    gets the family's median TDP, and an unknown brand gets the whole table's median; both are
    flagged so the caller can warn and the user can pass ``cpu_tdp_w``.
    """
    table = cpu_power_table() if table is None else table
    normalised = {_normalise(k): k for k in table}
    target = _normalise(brand)
    median_all = statistics.median(table.values())
    if target in normalised:
        name = normalised[target]
        return CpuTdp(brand, table[name], "exact", name, f"matched {name!r} ({table[name]:g} W)")
    tokens = target.split()
    models = [t for t in tokens if any(c.isdigit() for c in t)]
    if models:
        hits = [k for k in normalised if all(m in k.split() for m in models) and k.split()[0] == tokens[0]]
        if hits:
            best = min(hits, key=len)  # the plain model, not its "K"/"T" variants
            name = normalised[best]
            return CpuTdp(
                brand, table[name], "model", name, f"model {' '.join(models)!r} matched {name!r} ({table[name]:g} W)"
            )
    elif tokens:
        family = [k for k in normalised if k.split()[: len(tokens)] == tokens]
        if family:
            tdps = [table[normalised[k]] for k in family]
            tdp = statistics.median(tdps)
            return CpuTdp(
                brand,
                tdp,
                "generic",
                f"{len(family)} rows '{target} ...'",
                f"generic brand {brand!r} (no model number): median TDP of the {len(family)} table rows of "
                f"this family ({min(tdps):g}-{max(tdps):g} W) = {tdp:g} W",
            )
    return CpuTdp(
        brand,
        median_all,
        "default",
        "table median",
        f"unknown CPU {brand!r}: median TDP of the {len(table)}-row table = {median_all:g} W",
    )


@functools.lru_cache(maxsize=1)
def cpu_brand() -> str:
    """The CPU brand string, from ``/proc/cpuinfo`` when possible.

    ``cpuinfo.get_cpu_info()`` costs ~1.2 s (it forks a subprocess), so py-cpuinfo is only the
    fallback for systems without ``/proc/cpuinfo``; the result is cached per process.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        import cpuinfo

        return str(cpuinfo.get_cpu_info().get("brand_raw", "")) or "unknown CPU"
    except Exception:  # any failure just means "unknown"
        return "unknown CPU"


@functools.lru_cache(maxsize=1)
def cpu_topology() -> tuple[int, int, bool]:
    """``(logical CPUs, packages, under a hypervisor)`` from ``/proc/cpuinfo`` / ``os`` (cached)."""
    logical = os.cpu_count() or 1
    packages, hypervisor = set(), False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("physical id"):
                    packages.add(line.split(":", 1)[1].strip())
                elif line.startswith("flags") and " hypervisor" in line:
                    hypervisor = True
    except OSError:
        pass
    return logical, max(1, len(packages)), hypervisor


def process_tree_cpu_seconds(include_self: bool = True, pid: int | None = None) -> float:
    """User + system CPU seconds of a process, its live descendants and its reaped children.

    Reaped children are counted by the kernel in the parent's ``children_user/system`` (what
    ``time`` reports); live descendants are summed directly. A child that exits between two
    calls moves from the second group to the first, so differences stay correct.
    """
    import psutil

    proc = psutil.Process(pid)
    t = proc.cpu_times()
    total = t.children_user + t.children_system
    if include_self:
        total += t.user + t.system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            # its own reaped children too: grandchildren that finished while it still runs
            total += c.user + c.system + c.children_user + c.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


class CpuUtilisationEstimate(EnergyReader):
    """CPU package energy as TDP x utilisation of the measured process tree.

    utilisation = CPU seconds of the tree / (wall seconds x logical CPUs), so the energy of an
    interval is simply ``TDP x packages x CPU seconds / logical CPUs``: a fully busy machine
    gets the TDP of every package, a single busy thread on 2 vCPUs half of it, an idle wait ~0.

    Args:
        tdp: the :class:`CpuTdp` to use (per package).
        cpu_seconds: callable returning cumulative CPU seconds (default: this process tree).
        logical_cpus, packages: topology (default: :func:`cpu_topology`).
    """

    method = METHOD_TDP_UTIL
    poll_interval_s: float | None = None
    kind = "cpu"

    def __init__(
        self,
        tdp: CpuTdp,
        cpu_seconds: Callable[[], float] | None = None,
        logical_cpus: int | None = None,
        packages: int | None = None,
    ) -> None:
        topo = cpu_topology() if logical_cpus is None or packages is None else None
        self.logical_cpus = logical_cpus or topo[0]
        self.packages = packages or topo[1]
        if self.logical_cpus < 1 or self.packages < 1:
            raise ValueError(
                "CpuUtilisationEstimate: expected >= 1 logical CPU and package, "
                f"got {self.logical_cpus}, {self.packages}"
            )
        self.tdp = tdp
        self.device = tdp.brand
        self._cpu_seconds = cpu_seconds or process_tree_cpu_seconds
        self._start = self._cpu_seconds()
        self.cpu_seconds = 0.0

    def read(self) -> float:
        self.cpu_seconds = self._cpu_seconds() - self._start
        return self.tdp.tdp_w * self.packages * self.cpu_seconds / self.logical_cpus

    def utilisation(self, wall_s: float) -> float:
        """Mean utilisation (0-1) of all logical CPUs over ``wall_s`` seconds up to the last read."""
        return self.cpu_seconds / (wall_s * self.logical_cpus) if wall_s > 0 else float("nan")
