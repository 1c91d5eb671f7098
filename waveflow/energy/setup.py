"""How an :class:`~waveflow.energy.EnergyMeter` is set up: its settings checked, and a reader chosen
for each component with a note for every fallback.

GPUs are read through NVML (:func:`gpu_readers`); the CPU package and DRAM through RAPL
(:func:`rapl_readers`), and when no package counter can be read, the CPU is estimated from its TDP
(:func:`cpu_tdp`) and the CPU seconds of the measured process tree (:func:`cpu_estimate`). None of
these raises for a missing or unreadable source: each appends to the meter's notes what it could not
measure and why, so the record says which numbers are measured, which are estimated and which are
missing. Only settings that would make every number wrong raise, in :func:`check_settings`.

The readers are looked up as attributes of :mod:`waveflow.energy.readers` when called, so that
tests can replace ``readers.cpu_brand`` and ``readers.cpu_info``.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import readers as er

__all__ = ["caller_stacklevel", "check_settings", "cpu_estimate", "cpu_tdp", "gpu_readers", "rapl_readers"]


def check_settings(
    cpu_tdp_w: float | None, cpu_threads: int | None, poll_hz: float, idle_baseline_s: float | None
) -> None:
    """Refuse the settings no measurement could be right with (the arguments of :class:`EnergyMeter`).

    Raises:
        ValueError: a TDP that is not a positive number of watts, a thread count that is not a
            positive integer, a polling rate under 10 Hz, or an idle baseline that is negative.
    """
    if cpu_tdp_w is not None and not (
        isinstance(cpu_tdp_w, (int, float)) and math.isfinite(cpu_tdp_w) and cpu_tdp_w > 0
    ):
        raise ValueError(f"EnergyMeter.cpu_tdp_w: expected a positive number of watts, got {cpu_tdp_w!r}")
    if cpu_threads is not None and not (
        isinstance(cpu_threads, int) and not isinstance(cpu_threads, bool) and cpu_threads > 0
    ):
        raise ValueError(f"EnergyMeter.cpu_threads: expected a positive integer per package, got {cpu_threads!r}")
    if not poll_hz >= 10:
        raise ValueError(f"EnergyMeter.poll_hz: expected >= 10 Hz to follow NVML power, got {poll_hz!r}")
    if idle_baseline_s is not None and not (
        isinstance(idle_baseline_s, (int, float)) and math.isfinite(idle_baseline_s) and idle_baseline_s >= 0
    ):
        raise ValueError(f"EnergyMeter.idle_baseline_s: expected seconds >= 0, got {idle_baseline_s!r}")


def gpu_readers(nvml: Any, poll_hz: float, notes: list[str]) -> tuple[Any, list[er.EnergyReader]]:
    """``(the initialised NVML module or None, one reader per visible GPU)``.

    Args:
        nvml: the NVML module to use; None imports ``pynvml``.
        poll_hz: the power sampling rate of GPUs without an energy counter.
        notes: the meter's notes; a GPU that cannot be measured, and why, is appended.
    """
    opened, found = None, []
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        opened = nvml  # shut down at the meter's stop, whatever happens next
        found, more = er.nvml_readers(nvml, poll_hz)
        notes += more
        if not found:
            notes.append("NVML found no GPU")
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        notes.append(f"GPU not measured: NVML unavailable ({why})")
    return opened, found


def rapl_readers(
    powercap_root: str | Path | None, read_text: Callable[[Path], str] | None, notes: list[str]
) -> list[er.EnergyReader]:
    """The RAPL package and dram domains; none when the powercap tree is missing or unreadable.

    Args:
        powercap_root: the powercap tree (None: ``$WAVEFLOW_POWERCAP_ROOT`` or ``/sys/class/powercap``).
        read_text: the file reader for the counters (None: the file system).
        notes: the meter's notes; why DRAM or the CPU package is not measured is appended.
    """
    root = er.powercap_root(powercap_root)
    try:
        rapl = er.rapl_domains(root, read_text)
        if not rapl:
            notes.append(f"no RAPL domains under {root}; DRAM not measured")
        return rapl
    except Exception as exc:  # PermissionError on root-only energy_uj (Linux >= 5.10), garbage, EIO
        notes.append(f"RAPL unreadable ({type(exc).__name__}: {exc}); CPU estimated, DRAM not measured")
        return []


def cpu_tdp(cpu_tdp_w: float | None, warn: bool, notes: list[str]) -> er.CpuTdp:
    """The CPU's TDP for the estimate: the user's figure, else the table's entry for the CPU's brand.

    A bare brand's family is narrowed to the generations the CPU's flags allow, and the note says
    which filter applied and how many models it kept (or that none fit and the whole family is
    used). A TDP that is only a family median or a default is noted, and with ``warn`` also raised
    as a ``UserWarning`` pointing at the user's line (:func:`caller_stacklevel`).

    Args:
        cpu_tdp_w: the user's TDP in W per package, or None to look the brand up.
        warn: raise the warning as well as noting it.
        notes: the meter's notes.
    """
    brand = er.cpu_brand()
    if cpu_tdp_w is not None:
        return er.CpuTdp(brand, float(cpu_tdp_w), "override", "", f"user TDP {cpu_tdp_w:g} W")
    tdp = er.lookup_cpu_tdp(brand, flags=er.cpu_info().flags)
    if tdp.narrowing:
        notes.append(f"CPU family narrowed by the instruction sets /proc/cpuinfo reports: {tdp.narrowing}")
    if tdp.match in ("generic", "default"):
        notes.append("the CPU's TDP is not known exactly: set it with cpu_tdp_w=W (CLI: --cpu-tdp W)")
    if tdp.match in ("generic", "default") and warn:
        warnings.warn(
            f"EnergyMeter: {tdp.detail}; pass cpu_tdp_w=W (CLI: --cpu-tdp W) to set the real TDP",
            stacklevel=caller_stacklevel(),
        )
    return tdp


def cpu_estimate(
    tdp: er.CpuTdp, cpu_threads: int | None, cpu_seconds: Callable[[], float] | None, notes: list[str]
) -> er.CpuUtilisationEstimate:
    """The CPU estimate: per hardware thread on a VM or a slice of the package, else for the whole package.

    Args:
        tdp: the CPU's TDP (:func:`cpu_tdp`).
        cpu_threads: hardware threads per package, overriding ``/proc/cpuinfo`` and the table.
        cpu_seconds: cumulative CPU seconds of what is measured (None: this process tree).
        notes: the meter's notes; how the estimate was made and its bounds are appended.
    """
    info = er.cpu_info()
    threads, threads_source = cpu_threads, "user value (cpu_threads)"
    if threads is None and not info.hypervisor and info.threads_per_package:
        threads, threads_source = info.threads_per_package, "/proc/cpuinfo siblings (bare metal)"
    power = er.thread_power(tdp, threads, threads_source, flags=info.flags)
    slice_of_package = power.threads is not None and info.visible < info.packages * power.threads
    per_thread = info.hypervisor or slice_of_package
    est = er.CpuUtilisationEstimate(
        tdp, cpu_seconds, info.visible, info.packages, thread_power=power if per_thread else None
    )
    if per_thread:
        why = "virtual machine" if info.hypervisor else f"{info.visible} of {info.packages * power.threads} threads"
        notes.append(
            f"CPU energy estimated per hardware thread ({why}): {tdp.detail}; {power.watts:.3g} W per busy "
            f"thread from {power.source}; low {est.w_per_cpu * est.low_factor:.3g} W per busy thread "
            f"(without the {er.IDLE_SHARE:.0%} idle share), high {est.package_w_per_cpu:.3g} W "
            f"(the whole package's TDP over the {info.visible} visible logical CPU(s)); {_smt_caveat(est)}"
        )
        if est.capped:
            notes.append(
                f"the per-thread figure ({power.watts:.3g} W) exceeded the whole-package figure; capped at "
                f"{est.package_w_per_cpu:.3g} W per busy logical CPU"
            )
    else:
        notes.append(
            f"CPU energy estimated: {tdp.detail} x utilisation over {est.logical_cpus} logical CPU(s); "
            f"low bound without the {er.IDLE_SHARE:.0%} idle share"
        )
    return est


def _smt_caveat(est: er.CpuUtilisationEstimate) -> str:
    """Why the middle figure may be low for a vCPU: it is charged half a core when the CPU has SMT."""
    covered = "the high bound covers it" if est.high_factor >= 2 else "beyond the high bound here"
    return (
        "with two threads per core a busy thread is charged half its core's share, and when its SMT "
        f"sibling idles the core can draw up to about 2x that ({covered})"
    )


def caller_stacklevel() -> int:
    """stacklevel for warnings.warn that points at the user's call site: the first frame outside the
    ``waveflow`` package (so a warning raised under ``measure_training`` names the notebook cell or
    script that called it, never a line of this package)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "waveflow":
        frame, level = frame.f_back, level + 1
    return level
