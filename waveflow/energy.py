"""Energy meter: joules of a block of code per component, with the method behind each number.

    with EnergyMeter("train WF2", intensity="FR") as meter:
        for epoch in range(3):
            with meter.section(f"epoch {epoch}"):
                train_one_epoch()
    print(summary(meter.record)); append_record(meter.record)

For each component the meter takes the best source available and says which one it used
(see :mod:`waveflow.energy_readers`): NVML's energy counter, else NVML power sampled at 10 Hz;
RAPL package/dram counters, else TDP x measured CPU utilisation of the process tree. Every
fallback is written to ``record.notes``. The meter never raises once started and never exits the
process (no ``os._exit``/``sys.exit``): a reader that fails is recorded and the user's run goes
on. Only bad settings (unknown intensity code, PUE < 1) raise ``ValueError``, at construction.

``python -m waveflow energy -- CMD [ARGS...]`` measures any command like ``time`` does.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from . import energy_readers as er
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


# ------------------------------------------------------------------------------------------
# carbon intensity and PUE (owned by waveflow.carbon)
def resolve_carbon(intensity: Any = None, pue: Any = None) -> tuple[Any, Any]:
    """``(intensity, pue)`` objects from codes/names/values, via :mod:`waveflow.carbon`.

    ``intensity`` is a code (``"FR"``), an object with ``code``, ``g_per_kwh`` and ``source``,
    or None for ``carbon.DEFAULT_INTENSITY_CODE``; ``pue`` is a preset name, a number >= 1, or
    None for ``carbon.DEFAULT_PUE``. Unknown codes raise ``ValueError`` (from waveflow.carbon).
    """
    from . import carbon

    ci = intensity if hasattr(intensity, "g_per_kwh") else carbon.carbon_intensity(intensity or carbon.DEFAULT_INTENSITY_CODE)
    p = pue if hasattr(pue, "value") else carbon.resolve_pue(carbon.DEFAULT_PUE if pue is None else pue)
    return ci, p


# ------------------------------------------------------------------------------------------
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

    def __init__(self, label: str = "", *, intensity: Any = None, pue: Any = None, cpu_tdp_w: float | None = None,
                 gpu: bool = True, cpu: bool = True, nvml: Any = None, powercap_root: str | Path | None = None,
                 rapl_read_text: Callable[[Path], str] | None = None, cpu_seconds: Callable[[], float] | None = None,
                 poll_hz: float = er.DEFAULT_POLL_HZ, sync_cuda: bool = True) -> None:
        if cpu_tdp_w is not None and not (isinstance(cpu_tdp_w, (int, float)) and math.isfinite(cpu_tdp_w) and cpu_tdp_w > 0):
            raise ValueError(f"EnergyMeter.cpu_tdp_w: expected a positive number of watts, got {cpu_tdp_w!r}")
        if not poll_hz >= 10:
            raise ValueError(f"EnergyMeter.poll_hz: expected >= 10 Hz to follow NVML power, got {poll_hz!r}")
        self.label, self.cpu_tdp_w, self.gpu, self.cpu = label, cpu_tdp_w, gpu, cpu
        self._nvml_arg, self.powercap_root, self._rapl_read = nvml, powercap_root, rapl_read_text
        self._cpu_seconds, self.poll_hz, self.sync_cuda = cpu_seconds, poll_hz, sync_cuda
        self.notes: list[str] = []
        self.intensity, self.pue = self._carbon(intensity, pue)
        self.readers: list[Any] = []
        self.record: EnergyRecord | None = None
        self._nvml = None
        self._t0: float | None = None
        self._marks: list[tuple[str, float, dict[str, float]]] = []
        self._sections: list[Interval] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _carbon(self, intensity: Any, pue: Any) -> tuple[Any, Any]:
        try:
            return resolve_carbon(intensity, pue)
        except ImportError as exc:  # the carbon module is missing: keep measuring energy
            self.notes.append(f"waveflow.carbon unavailable ({exc}); no CO2 figure")
            value = float(pue) if isinstance(pue, (int, float)) else 1.0
            return (_Fallback(code=str(intensity or ""), g_per_kwh=float("nan"), source="unavailable"),
                    _Fallback(name="value" if isinstance(pue, (int, float)) else "none", value=value, source="unavailable"))

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
                self.notes.append(f"GPU not measured: NVML unavailable ({type(exc).__name__}: {exc})".rstrip(": )") + ")")
        self.tdp: er.CpuTdp | None = None
        if not self.cpu:
            return
        rapl: list[Any] = []
        try:
            rapl = er.rapl_domains(self.powercap_root, self._rapl_read)
            if not rapl:
                self.notes.append(f"no RAPL domains under {self.powercap_root or er.DEFAULT_POWERCAP_ROOT}; DRAM not measured")
        except Exception as exc:  # PermissionError on root-only energy_uj (Linux >= 5.10)
            self.notes.append(f"RAPL unreadable ({type(exc).__name__}: {exc}); CPU estimated, DRAM not measured")
        self.readers += rapl
        if not any(r.kind == "cpu" for r in rapl):
            self.readers.append(self._cpu_estimate())

    def _cpu_estimate(self) -> er.CpuUtilisationEstimate:
        brand = er.cpu_brand()
        if self.cpu_tdp_w is not None:
            tdp = er.CpuTdp(brand, float(self.cpu_tdp_w), "override", "", f"user TDP {self.cpu_tdp_w:g} W")
        else:
            tdp = er.lookup_cpu_tdp(brand)
            if tdp.match in ("generic", "default"):
                warnings.warn(f"EnergyMeter: {tdp.detail}; pass cpu_tdp_w=W (CLI: --cpu-tdp W) to set the real TDP",
                              stacklevel=_caller_stacklevel())
        self.tdp = tdp
        est = er.CpuUtilisationEstimate(tdp, self._cpu_seconds)
        self.notes.append(f"CPU energy estimated: {tdp.detail} x utilisation over {est.logical_cpus} logical CPU(s)")
        if er.cpu_topology()[2]:
            self.notes.append("virtual machine: the TDP is a whole physical package's; the estimate is an upper bound for the visible vCPUs")
        return est

    # -- measuring ---------------------------------------------------------------------------
    def start(self) -> "EnergyMeter":
        """Start measuring (idempotent)."""
        if self._t0 is not None:
            return self
        try:
            self._build_readers()
        except Exception as exc:  # never let set-up break the user's run
            self.notes.append(f"meter set-up failed: {type(exc).__name__}: {exc}")
        self._sync()
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
        while not self._stop.wait(interval):
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
            except Exception:  # noqa: BLE001
                pass

    def _snapshot(self) -> tuple[float, dict[int, float]]:
        """(seconds since start, cumulative joules per reader); a failing reader keeps its last value."""
        self._sync()
        t = time.perf_counter() - (self._t0 or time.perf_counter())
        for r in self.readers:
            try:
                self._last[id(r)] = float(r.read())
            except Exception as exc:
                self.notes.append(f"{r.device}: read failed at {t:.2f} s ({type(exc).__name__}: {exc}); value is a lower bound")
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
        except Exception as exc:  # noqa: BLE001
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
            label=self.label, timestamp=self.timestamp, wall_s=wall, components=comps, cpu_device=cpu_dev,
            cpu_tdp_w=est.tdp.tdp_w if est else float("nan"), cpu_tdp_match=est.tdp.match if est else "",
            cpu_utilisation=est.utilisation(wall) if est else float("nan"),
            pue=float(self.pue.value), pue_name=str(self.pue.name), pue_source=str(self.pue.source),
            intensity_code=str(self.intensity.code), intensity_g_per_kwh=float(self.intensity.g_per_kwh),
            intensity_source=str(self.intensity.source), sections=list(self._sections),
            marks=[Interval(lab, 0.0, t, self._by_kind({}, s)) for lab, t, s in self._marks],
            notes=list(self.notes), hostname=socket.gethostname(), git_commit=git_commit(),
            command=command, exit_code=exit_code,
        )
        return self.record

    def __enter__(self) -> "EnergyMeter":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.notes.append(f"block raised {exc_type.__name__}")
        self.stop()
        return False  # never swallow the user's exception


@dataclass
class _Fallback:
    """Stand-in intensity / PUE when waveflow.carbon cannot be imported."""

    code: str = ""
    g_per_kwh: float = float("nan")
    source: str = ""
    name: str = ""
    value: float = 1.0


def _caller_stacklevel() -> int:
    """stacklevel for warnings.warn that points at the first frame outside this package."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("waveflow.energy"):
        frame, level = frame.f_back, level + 1
    return level


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
    return pd.read_csv(path, dtype={"git_commit": str, "label": str, "notes": str, "sections": str},
                       keep_default_na=False, na_values=["nan", "NaN", ""])


from .energy_cli import add_arguments, measure_overhead, run, summary  # noqa: E402,F401  (CLI entry points)
