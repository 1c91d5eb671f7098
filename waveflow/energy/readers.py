"""Energy readers behind :class:`waveflow.energy.EnergyMeter`: RAPL, NVML, and the CPU estimate.

Every reader is an :class:`EnergyReader` with the same tiny interface: ``read() -> float`` returns the
joules used since the reader was built (a cumulative figure), so a meter can take snapshots at the
start, at marks and at the end of a block and subtract them. Readers that need periodic attention
(power polling, RAPL wrap-around) also have ``poll()`` and a ``poll_interval_s``; the meter runs one
background thread for them only when at least one reader asks for it.

This module is the readers' face: RAPL lives in :mod:`~.rapl`, NVML in :mod:`~.nvml`, the CPU power
tables in :mod:`~.cpu_tdp`, and everything is re-exported here. The CPU estimate itself, the CPU's
brand and topology are defined here (tests replace ``readers.cpu_brand``).

Method labels (the ``method`` attribute) say how a number was obtained, scopes what it covers:

* ``measured:nvml-energy`` (device): NVML's ``nvmlDeviceGetTotalEnergyConsumption`` counter (mJ, Volta+);
* ``measured:nvml-power`` (device): ``nvmlDeviceGetPowerUsage`` sampled in a thread and integrated
  (trapezoids) for GPUs without the counter, e.g. the paper-era TITAN/Pascal cards;
* ``measured:rapl`` (device): powercap package and dram counters, wrap-around corrected, mirrored
  per-die zones counted once;
* ``estimated:tdp-per-thread×utilisation`` (process-tree): TDP per hardware thread times the busy
  threads of the measured process tree; used under a hypervisor or when the visible logical CPUs are
  fewer than the package's, so that 2 vCPUs are not charged a whole package;
* ``estimated:tdp×utilisation`` (process-tree): the package TDP times the tree's share of all the
  package's logical CPUs, when the whole package is visible (bare metal without RAPL access).

Both estimates carry a low and a high bound (:class:`CpuUtilisationEstimate`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from .base import (
    METHOD_NVML_ENERGY,
    METHOD_NVML_POWER,
    METHOD_RAPL,
    METHOD_TDP_PER_THREAD,
    METHOD_TDP_UTIL,
    METHOD_WALL,
    SCOPE_DEVICE,
    SCOPE_PROCESS_TREE,
    EnergyReader,
)
from .cpu_tdp import (
    CPU_POWER_CSV,
    CPU_THREADS_CSV,
    DEFAULT_W_PER_THREAD,
    IDLE_SHARE,
    CpuTdp,
    ThreadPower,
    cpu_power_table,
    cpu_threads_table,
    lookup_cpu_tdp,
    thread_power,
)
from .nvml import (
    DEFAULT_POLL_HZ,
    NvmlEnergyCounter,
    NvmlPowerIntegrator,
    cuda_uuids,
    nvml_readers,
    visible_gpu_handles,
    zero_energy_note,
)
from .rapl import (
    DEFAULT_POWERCAP_ROOT,
    POWERCAP_ENV,
    RAPL_DOMAINS,
    RAPL_MIRROR_TOLERANCE_UJ,
    RAPL_POLL_S,
    RaplDomain,
    mirrored_zones,
    powercap_root,
    rapl_domains,
)

__all__ = [
    "CPU_POWER_CSV",
    "CPU_THREADS_CSV",
    "CPUINFO_PATH",
    "DEFAULT_POLL_HZ",
    "DEFAULT_POWERCAP_ROOT",
    "DEFAULT_W_PER_THREAD",
    "IDLE_SHARE",
    "METHOD_NVML_ENERGY",
    "METHOD_NVML_POWER",
    "METHOD_RAPL",
    "METHOD_TDP_PER_THREAD",
    "METHOD_TDP_UTIL",
    "METHOD_WALL",
    "POWERCAP_ENV",
    "RAPL_DOMAINS",
    "RAPL_MIRROR_TOLERANCE_UJ",
    "RAPL_POLL_S",
    "SCOPE_DEVICE",
    "SCOPE_PROCESS_TREE",
    "CpuInfo",
    "CpuTdp",
    "CpuUtilisationEstimate",
    "EnergyReader",
    "NvmlEnergyCounter",
    "NvmlPowerIntegrator",
    "RaplDomain",
    "ThreadPower",
    "cpu_brand",
    "cpu_info",
    "cpu_power_table",
    "cpu_threads_table",
    "cpu_topology",
    "cuda_uuids",
    "lookup_cpu_tdp",
    "mirrored_zones",
    "nvml_readers",
    "powercap_root",
    "process_tree_cpu_seconds",
    "rapl_domains",
    "thread_power",
    "visible_gpu_handles",
    "zero_energy_note",
]


#: Where the CPU's brand, topology and flags are read (tests point it at a fake file).
CPUINFO_PATH = "/proc/cpuinfo"


@functools.lru_cache(maxsize=1)
def cpu_brand() -> str:
    """The CPU brand string, from ``/proc/cpuinfo`` when possible.

    ``cpuinfo.get_cpu_info()`` costs ~1.2 s (it forks a subprocess), so py-cpuinfo is only the
    fallback for systems without ``/proc/cpuinfo``; the result is cached per process.
    """
    try:
        with open(CPUINFO_PATH, encoding="utf-8") as f:
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


@dataclass(frozen=True)
class CpuInfo:
    """What the estimate needs to know about this machine's CPUs.

    Args:
        logical: logical CPUs the OS reports (``os.cpu_count()``).
        visible: logical CPUs this process may run on (its affinity mask; containers pinned to a
            cpuset see fewer than ``logical``).
        packages: physical packages (sockets) from ``/proc/cpuinfo`` ``physical id``.
        threads_per_package: ``siblings`` from ``/proc/cpuinfo``: the package's hardware threads on
            bare metal, a virtual socket's vCPUs under a hypervisor (so not used there).
        hypervisor: the ``hypervisor`` CPU flag is set (a VM: the vCPUs are a slice of a host).
        flags: the CPU flags of ``/proc/cpuinfo`` (``avx2``, ``avx512f``, ``amx_tile``, ...), which
            tell the generations a bare brand can be (:mod:`~waveflow.energy.cpu_isa`); None when
            the system does not list them (then no family is narrowed).
    """

    logical: int
    visible: int
    packages: int
    threads_per_package: int | None
    hypervisor: bool
    flags: frozenset[str] | None = None


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` from ``/proc/cpuinfo`` and ``os`` (cached)."""
    logical = os.cpu_count() or 1
    try:
        visible = len(os.sched_getaffinity(0)) or logical
    except (AttributeError, OSError):  # macOS, Windows
        visible = logical
    packages, siblings, flags = set(), None, None
    try:
        with open(CPUINFO_PATH, encoding="utf-8") as f:
            for line in f:
                if line.startswith("physical id"):
                    packages.add(line.split(":", 1)[1].strip())
                elif line.startswith("siblings") and siblings is None:
                    try:
                        siblings = int(line.split(":", 1)[1])
                    except ValueError:
                        pass
                elif line.startswith("flags") and flags is None:
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    hypervisor = flags is not None and "hypervisor" in flags
    return CpuInfo(logical, min(visible, logical), max(1, len(packages)), siblings, hypervisor, flags)


def cpu_topology() -> tuple[int, int, bool]:
    """``(visible logical CPUs, packages, under a hypervisor)``: the short form of :func:`cpu_info`."""
    info = cpu_info()
    return info.visible, info.packages, info.hypervisor


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
    """CPU energy of the measured process tree from a TDP and its CPU seconds, with bounds.

    Two rules, both proportional to the tree's CPU seconds ``s`` (so both follow the load, and a
    difference of two readings is the estimate of the interval between them):

    * **package** (``thread_power`` None): ``TDP x packages x s / logical CPUs``: a fully busy
      machine gets the TDP of every package, a single busy thread of 4 a quarter of it. Used when
      the whole package is visible. Label ``estimated:tdp×utilisation``.
    * **per thread** (``thread_power`` given): ``W per thread x s``, W = TDP / the package's
      hardware threads. Used under a hypervisor or when fewer logical CPUs are visible than the
      package has, where the package rule would charge a few vCPUs a whole package. Label
      ``estimated:tdp-per-thread×utilisation``.

    The bounds: **high** is always the package rule (the whole package's power spread over the
    visible CPUs only); **low** is the per-thread figure without the idle share,
    ``(1 - IDLE_SHARE) x`` the lowest per-thread power the match allows (see
    :func:`~waveflow.energy.cpu_tdp.thread_power`). The middle (what :meth:`read` returns) never
    exceeds the high bound.

    Args:
        tdp: the :class:`CpuTdp` to use (per package).
        cpu_seconds: callable returning cumulative CPU seconds (default: this process tree).
        logical_cpus, packages: topology (default: :func:`cpu_topology`).
        thread_power: watts per hardware thread; given = the per-thread rule.
    """

    poll_interval_s: float | None = None
    kind = "cpu"
    scope = SCOPE_PROCESS_TREE

    def __init__(
        self,
        tdp: CpuTdp,
        cpu_seconds: Callable[[], float] | None = None,
        logical_cpus: int | None = None,
        packages: int | None = None,
        thread_power: ThreadPower | None = None,
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
        self.thread_power = thread_power
        self.device = tdp.brand
        #: watts per busy logical CPU under the package rule = the high bound's rate
        self.package_w_per_cpu = tdp.tdp_w * self.packages / self.logical_cpus
        if thread_power is None:
            self.method = METHOD_TDP_UTIL
            self.w_per_cpu = self.package_w_per_cpu
            low_w = (1 - IDLE_SHARE) * self.w_per_cpu
        else:
            self.method = METHOD_TDP_PER_THREAD
            self.w_per_cpu = min(thread_power.watts, self.package_w_per_cpu)
            low_w = min(thread_power.watts_low, self.w_per_cpu)
        self.low_factor = low_w / self.w_per_cpu
        self.high_factor = self.package_w_per_cpu / self.w_per_cpu
        self._cpu_seconds = cpu_seconds or process_tree_cpu_seconds
        self._start = self._cpu_seconds()
        self.cpu_seconds = 0.0

    @property
    def capped(self) -> bool:
        """The per-thread figure was above the package rule and was lowered to it."""
        return self.thread_power is not None and self.thread_power.watts > self.package_w_per_cpu

    def read(self) -> float:
        self.cpu_seconds = self._cpu_seconds() - self._start
        return self.w_per_cpu * self.cpu_seconds

    def utilisation(self, wall_s: float, cpu_seconds: float | None = None) -> float:
        """Mean utilisation (0-1) of the logical CPUs over ``wall_s`` seconds (default: up to the last read)."""
        cpu_s = self.cpu_seconds if cpu_seconds is None else cpu_seconds
        return cpu_s / (wall_s * self.logical_cpus) if wall_s > 0 else float("nan")
