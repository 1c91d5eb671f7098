"""Energy meter: joules of a block of code per component, with the method behind each number.

    with EnergyMeter("train WF2", intensity="FR") as meter:
        for epoch in range(3):
            with meter.section(f"epoch {epoch}"):
                train_one_epoch()
    print(summary(meter.record)); append_record(meter.record)

For each component the meter takes the best source available and says which one it used
(see :mod:`waveflow.energy.readers`): NVML's energy counter, else NVML power sampled at 10 Hz;
RAPL package/dram counters, else TDP x measured CPU utilisation of the process tree. Every
fallback is written to ``record.notes``. The meter never raises once started and never exits the
process (no ``os._exit``/``sys.exit``): a reader that fails is recorded and the user's run goes
on. Only bad settings (unknown intensity code, PUE < 1) raise ``ValueError``, at construction.

``python -m waveflow energy -- CMD [ARGS...]`` measures any command like ``time`` does.
"""

from __future__ import annotations

import contextlib
import math
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import carbon
from . import readers as er
from .record import ComponentEnergy, EnergyRecord, Interval, git_commit


class EnergyMeter:
    """Measure the energy of a block of code; a context manager or ``start()``/``stop()``.

    Args:
        label: name of the block in the record and the log (default "").
        intensity: grid carbon-intensity code or object (default: waveflow.carbon's default).
        pue: PUE preset name or value (default: waveflow.carbon's default).
        cpu_tdp_w: TDP (W per package) for the CPU estimate, overriding the table lookup.
        gpu, cpu: measure GPUs / CPU+DRAM (default True).
        nvml: the NVML module to use; None imports ``pynvml``, False disables GPUs (tests inject fakes).
        powercap_root: the powercap tree (default ``/sys/class/powercap``; tests pass a tmp dir).
        rapl_read_text: file reader for RAPL (tests inject one raising PermissionError).
        cpu_seconds: cumulative CPU seconds of what is measured (default: this process tree).
        poll_hz: NVML power sampling rate for GPUs without an energy counter (default 10).
        sync_cuda: call ``torch.cuda.synchronize()`` at the ends so queued kernels count (default True).
    """

    def __init__(
        self,
        label: str = "",
        *,
        intensity: Any = None,
        pue: Any = None,
        cpu_tdp_w: float | None = None,
        gpu: bool = True,
        cpu: bool = True,
        nvml: Any = None,
        powercap_root: str | Path | None = None,
        rapl_read_text: Callable[[Path], str] | None = None,
        cpu_seconds: Callable[[], float] | None = None,
        poll_hz: float = er.DEFAULT_POLL_HZ,
        sync_cuda: bool = True,
    ) -> None:
        if cpu_tdp_w is not None and not (
            isinstance(cpu_tdp_w, (int, float)) and math.isfinite(cpu_tdp_w) and cpu_tdp_w > 0
        ):
            raise ValueError(f"EnergyMeter.cpu_tdp_w: expected a positive number of watts, got {cpu_tdp_w!r}")
        if not poll_hz >= 10:
            raise ValueError(f"EnergyMeter.poll_hz: expected >= 10 Hz to follow NVML power, got {poll_hz!r}")
        self.label, self.cpu_tdp_w, self.gpu, self.cpu = label, cpu_tdp_w, gpu, cpu
        self._nvml_arg, self.powercap_root, self._rapl_read = nvml, powercap_root, rapl_read_text
        self._cpu_seconds, self.poll_hz, self.sync_cuda = cpu_seconds, poll_hz, sync_cuda
        self.notes: list[str] = []
        self.intensity, self.pue = carbon.resolve(intensity, pue)
        self.readers: list[er.EnergyReader] = []
        self.record: EnergyRecord | None = None
        self._nvml = None
        self._t0: float | None = None
        self._read_failures: dict[int, int] = {}
        self._marks: list[tuple[str, float, dict[str, float]]] = []
        self._sections: list[Interval] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll_cpu_s = 0.0

    # -- set-up -------------------------------------------------------------------------------
    def _build_readers(self) -> None:
        if self.gpu and self._nvml_arg is not False:
            try:
                nvml = self._nvml_arg
                if nvml is None:
                    import pynvml as nvml
                nvml.nvmlInit()
                self._nvml = nvml
                readers, notes = er.nvml_readers(nvml, self.poll_hz)
                self.readers += readers
                self.notes += notes
                if not readers:
                    self.notes.append("NVML found no GPU")
            except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.notes.append(f"GPU not measured: NVML unavailable ({why})")
        self.tdp: er.CpuTdp | None = None
        if not self.cpu:
            return
        rapl: list[er.EnergyReader] = []
        try:
            rapl = er.rapl_domains(self.powercap_root, self._rapl_read)
            if not rapl:
                self.notes.append(
                    f"no RAPL domains under {self.powercap_root or er.DEFAULT_POWERCAP_ROOT}; DRAM not measured"
                )
        except Exception as exc:  # PermissionError on root-only energy_uj (Linux >= 5.10)
            self.notes.append(f"RAPL unreadable ({type(exc).__name__}: {exc}); CPU estimated, DRAM not measured")
        self.readers += rapl
        if not any(r.kind == "cpu" for r in rapl):
            self.readers.append(self._cpu_estimate())
        elif self.cpu_tdp_w is not None:
            self.notes.append(f"cpu_tdp_w={self.cpu_tdp_w:g} unused: the CPU package is measured by RAPL")

    def _cpu_estimate(self) -> er.CpuUtilisationEstimate:
        brand = er.cpu_brand()
        if self.cpu_tdp_w is not None:
            tdp = er.CpuTdp(brand, float(self.cpu_tdp_w), "override", "", f"user TDP {self.cpu_tdp_w:g} W")
        else:
            tdp = er.lookup_cpu_tdp(brand)
            if tdp.match in ("generic", "default"):
                warnings.warn(
                    f"EnergyMeter: {tdp.detail}; pass cpu_tdp_w=W (CLI: --cpu-tdp W) to set the real TDP",
                    stacklevel=_caller_stacklevel(),
                )
        self.tdp = tdp
        est = er.CpuUtilisationEstimate(tdp, self._cpu_seconds)
        self.notes.append(f"CPU energy estimated: {tdp.detail} x utilisation over {est.logical_cpus} logical CPU(s)")
        if er.cpu_topology()[2]:
            self.notes.append(
                "virtual machine: the TDP is a whole physical package's; "
                "the estimate is an upper bound for the visible vCPUs"
            )
        return est

    # -- measuring ---------------------------------------------------------------------------
    def start(self) -> EnergyMeter:
        """Start measuring (idempotent)."""
        if self._t0 is not None:
            return self
        self._sync()  # GPU work queued before the block must not land in it (readers take baselines next)
        try:
            self._build_readers()
        except Exception as exc:  # never let set-up break the user's run
            self.notes.append(f"meter set-up failed: {type(exc).__name__}: {exc}")
        self._t0 = time.perf_counter()
        self.timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._last = {id(r): 0.0 for r in self.readers}
        if any(r.poll_interval_s for r in self.readers):
            self._thread = threading.Thread(target=self._poll_loop, name="EnergyMeterPoll", daemon=True)
            self._thread.start()
        return self

    def _poll_loop(self) -> None:
        pollers = [r for r in self.readers if r.poll_interval_s]
        due = {id(r): 0.0 for r in pollers}
        interval = min(r.poll_interval_s for r in pollers)
        cpu0 = time.thread_time()
        while not self._stop.wait(interval):
            self.poll_cpu_s = time.thread_time() - cpu0  # the sampler's own CPU use, for the overhead bench
            now = time.perf_counter()
            for r in pollers:
                if now >= due[id(r)]:
                    try:
                        r.poll()
                    except Exception as exc:
                        self.notes.append(f"{r.device}: polling stopped ({type(exc).__name__}: {exc})")
                        pollers = [p for p in pollers if p is not r]
                    due[id(r)] = now + r.poll_interval_s
            if not pollers:
                return

    def _sync(self) -> None:
        if self.sync_cuda and "torch" in sys.modules:
            try:
                torch = sys.modules["torch"]
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    torch.cuda.synchronize()
            except Exception:  # a failed sync must not end the user's run
                pass

    def _snapshot(self) -> tuple[float, dict[int, float]]:
        """(seconds since start, cumulative joules per reader); a failing reader keeps its last value."""
        self._sync()
        t = time.perf_counter() - (self._t0 or time.perf_counter())
        for r in self.readers:
            try:
                self._last[id(r)] = float(r.read())
            except Exception as exc:
                # Note the first failure per reader only: a reader failing at every section would
                # otherwise grow the notes (and the CSV cell) without bound.
                failures = self._read_failures.get(id(r), 0)
                self._read_failures[id(r)] = failures + 1
                if not failures:
                    self.notes.append(
                        f"{r.device}: read failed at {t:.2f} s ({type(exc).__name__}: {exc}); "
                        "value is a lower bound (further failures of this reader not listed)"
                    )
        return t, dict(self._last)

    def _by_kind(self, start: dict[int, float], end: dict[int, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.readers:
            out[r.kind] = out.get(r.kind, 0.0) + end[id(r)] - start.get(id(r), 0.0)
        return out

    def mark(self, label: str) -> None:
        """Remember the energy used from the start up to now under ``label`` (e.g. "epoch 3")."""
        if self._t0 is None or self.record is not None:
            return
        try:
            t, snap = self._snapshot()
            self._marks.append((label, t, snap))
        except Exception as exc:
            self.notes.append(f"mark {label!r} failed: {exc}")

    @contextlib.contextmanager
    def section(self, label: str) -> Iterator[None]:
        """Measure a sub-block (an epoch, a step) into ``record.sections``."""
        started = self._t0 is not None and self.record is None
        if started:
            t0, s0 = self._snapshot()
        try:
            yield
        finally:
            if started and self.record is None:
                t1, s1 = self._snapshot()
                self._sections.append(Interval(label, t0, t1, self._by_kind(s0, s1)))

    def stop(self, exit_code: int | None = None, command: str = "") -> EnergyRecord:
        """Stop, release NVML and return the :class:`EnergyRecord` (idempotent)."""
        if self.record is not None:
            return self.record
        self.start()
        wall, snap = self._snapshot()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for r in self.readers:
            with contextlib.suppress(Exception):
                r.close()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
        comps = [ComponentEnergy(r.kind, r.device, snap[id(r)], r.method) for r in self.readers]
        est = next((r for r in self.readers if isinstance(r, er.CpuUtilisationEstimate)), None)
        cpu_dev = next((r.device for r in self.readers if r.kind == "cpu"), er.cpu_brand() if self.cpu else "")
        self.record = EnergyRecord(
            label=self.label,
            timestamp=self.timestamp,
            wall_s=wall,
            components=comps,
            cpu_device=cpu_dev,
            cpu_tdp_w=est.tdp.tdp_w if est else float("nan"),
            cpu_tdp_match=est.tdp.match if est else "",
            cpu_utilisation=est.utilisation(wall) if est else float("nan"),
            pue=float(self.pue.value),
            pue_name=str(self.pue.name),
            pue_source=str(self.pue.source),
            intensity_code=str(self.intensity.code),
            intensity_g_per_kwh=float(self.intensity.g_per_kwh),
            intensity_source=str(self.intensity.source),
            sections=list(self._sections),
            marks=[Interval(lab, 0.0, t, self._by_kind({}, s)) for lab, t, s in self._marks],
            notes=list(self.notes),
            hostname=socket.gethostname(),
            git_commit=git_commit(),
            command=command,
            exit_code=exit_code,
        )
        return self.record

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.notes.append(f"block raised {exc_type.__name__}")
        self.stop()
        return False  # never swallow the user's exception


def _caller_stacklevel() -> int:
    """stacklevel for warnings.warn that points at the user's call site: the first frame outside the
    ``waveflow`` package (so a warning raised under ``measure_training`` names the notebook cell or
    script that called it, never a line of this package)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "waveflow":
        frame, level = frame.f_back, level + 1
    return level
