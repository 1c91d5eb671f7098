"""Energy meter: joules of a block of code per component, with the method and scope behind each number.

    with EnergyMeter("train WF2", intensity="FR") as meter:
        for epoch in range(3):
            with meter.window(f"epoch {epoch}") as epoch_energy:
                train_one_epoch()
            print(epoch_energy.joules, epoch_energy.joules_low, epoch_energy.joules_high)
            if meter.read().joules > budget_j:
                break
    print(summary(meter.record)); append_record(meter.record)

Results exist while the block runs: ``meter.window(name)`` (or ``begin_window``/``end_window``)
gives a :class:`~waveflow.energy.Measurement` of a part, ``meter.read()`` the energy so far, and
both keep the method, scope and bounds of every figure. Windows and sections also go to
``record.sections`` with those details. To meter every call of a function, see
:func:`~waveflow.energy.measure_energy`.

For each component the meter takes the best source available and says which one it used
(see :mod:`waveflow.energy.readers`): NVML's energy counter, else NVML power sampled at 10 Hz;
RAPL package/dram counters, else an estimate from the CPU's TDP and the CPU seconds of the process
tree, per hardware thread on a VM, with a low and a high bound. Every fallback is written to
``record.notes``. Optional: ``idle_baseline_s`` measures idle power before the block, so the record
also carries the dynamic energy; ``wall_meter`` reads a wall-meter log as a check.

The meter never raises once started and never exits the process (no ``os._exit``/``sys.exit``): a
reader that fails is recorded and the user's run goes on. Only bad settings (unknown intensity
code, PUE < 1, a non-positive TDP) raise ``ValueError``, at construction.

``python -m waveflow energy -- CMD [ARGS...]`` measures any command like ``time`` does.
"""

from __future__ import annotations

import contextlib
import math
import socket
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import carbon, setup, tdp_check
from . import readers as er
from .measurement import Measurement, fill
from .provenance import project_commit
from .readings import Readings, Snap
from .record import ComponentEnergy, EnergyRecord, git_commit
from .wallmeter import wall_energy


class EnergyMeter:
    """Measure the energy of a block of code; a context manager or ``start()``/``stop()``.

    While it runs, :meth:`window` (or :meth:`begin_window`/:meth:`end_window`) measures a part of
    the block and :meth:`read` the energy so far, each as a :class:`~waveflow.energy.Measurement`;
    :meth:`stop` returns the :class:`~waveflow.energy.EnergyRecord` of the whole block. The record
    also carries the commit of the working directory's repository at :meth:`start` (the measured
    project's code) and waveflow's version.

    Args:
        label: name of the block in the record and the log (default "").
        intensity: grid carbon-intensity code or object (default: waveflow.carbon's default).
        pue: PUE preset name or value (default: waveflow.carbon's default).
        cpu_tdp_w: TDP (W per package) for the CPU estimate, overriding the table lookup.
        cpu_threads: hardware threads per package for the per-thread estimate, overriding the table.
        gpu: measure GPUs (default True).
        cpu: measure CPU and DRAM (default True).
        nvml: the NVML module to use; None imports ``pynvml``, False disables GPUs (tests inject fakes).
        powercap_root: the powercap tree (default ``$WAVEFLOW_POWERCAP_ROOT`` or ``/sys/class/powercap``).
        rapl_read_text: file reader for RAPL (tests inject one raising PermissionError).
        cpu_seconds: cumulative CPU seconds of what is measured (default: this process tree).
        poll_hz: NVML power sampling rate for GPUs without an energy counter (default 10).
        sync_cuda: call ``torch.cuda.synchronize()`` at the ends so queued kernels count (default True).
        idle_baseline_s: seconds of idle to measure before the block (default None: off). The
            start then blocks that long; the record gains ``idle_w`` and ``dynamic_j``.
        wall_meter: a ``timestamp,watts`` CSV written by a wall meter (default None), integrated over
            the block's window at ``stop()`` as a check on the other components.
        warn: raise a ``UserWarning`` when the CPU's TDP is a family median or a default (default
            True). The same text is always in ``record.notes``; workflows that report the notes
            next to their numbers pass False, so a notebook shows each note once, not per block.
    """

    def __init__(
        self,
        label: str = "",
        *,
        intensity: Any = None,
        pue: Any = None,
        cpu_tdp_w: float | None = None,
        cpu_threads: int | None = None,
        gpu: bool = True,
        cpu: bool = True,
        nvml: Any = None,
        powercap_root: str | Path | None = None,
        rapl_read_text: Callable[[Path], str] | None = None,
        cpu_seconds: Callable[[], float] | None = None,
        poll_hz: float = er.DEFAULT_POLL_HZ,
        sync_cuda: bool = True,
        idle_baseline_s: float | None = None,
        wall_meter: str | Path | None = None,
        warn: bool = True,
    ) -> None:
        setup.check_settings(cpu_tdp_w, cpu_threads, poll_hz, idle_baseline_s)
        self.label, self.cpu_tdp_w, self.cpu_threads, self.gpu, self.cpu = label, cpu_tdp_w, cpu_threads, gpu, cpu
        self._nvml_arg, self.powercap_root, self._rapl_read = nvml, powercap_root, rapl_read_text
        self._cpu_seconds, self.poll_hz, self.sync_cuda = cpu_seconds, poll_hz, sync_cuda
        self.idle_baseline_s = float(idle_baseline_s) if idle_baseline_s else None
        self.wall_meter = Path(wall_meter) if wall_meter is not None else None
        self.warn = warn
        self.notes: list[str] = []
        self.intensity, self.pue = carbon.resolve(intensity, pue)
        self.readers: list[er.EnergyReader] = []
        self.record: EnergyRecord | None = None
        self.tdp: er.CpuTdp | None = None
        self._nvml = None
        self._t0: float | None = None
        self._unix0 = math.nan
        self._readings = Readings(self.readers, self.notes)
        self._cpu_s_base = 0.0
        self._idle_w = math.nan
        self._marks: list[tuple[str, float, Snap]] = []
        self._sections: list[tuple[str, float, Snap, float, Snap]] = []
        self._open: dict[object, tuple[str, str, float, Snap]] = {}  # key -> (what, name, start s, snapshot)
        self._closed_at_stop: dict[object, Measurement] = {}  # windows that stop() ended, by key
        self._project_commit = ""
        self._machine_tdp = (math.nan, "")  # the whole machine's TDP for a wall meter's TDP x time check

    # -- set-up -------------------------------------------------------------------------------
    def _build_readers(self) -> None:
        """The best reader of each component, a note for every fallback (:mod:`~waveflow.energy.setup`)."""
        if self.gpu and self._nvml_arg is not False:
            self._nvml, gpus = setup.gpu_readers(self._nvml_arg, self.poll_hz, self.notes)
            self.readers += gpus
        if not self.cpu:
            return
        rapl = setup.rapl_readers(self.powercap_root, self._rapl_read, self.notes)
        self.readers += rapl
        if not any(r.kind == "cpu" for r in rapl):
            self.tdp = setup.cpu_tdp(self.cpu_tdp_w, self.warn, self.notes)
            self.readers.append(setup.cpu_estimate(self.tdp, self.cpu_threads, self._cpu_seconds, self.notes))
        elif self.cpu_tdp_w is not None:
            self.notes.append(
                f"cpu_tdp_w={self.cpu_tdp_w:g} is not used for the CPU's energy, which RAPL measures; "
                "only for the TDP x time check"
            )

    @property
    def poll_cpu_s(self) -> float:
        """CPU seconds the sampling thread has used so far (for the overhead bench)."""
        return self._readings.poll_cpu_s

    @property
    def polls(self) -> int:
        """Wake-ups of the sampling thread so far (for the overhead bench)."""
        return self._readings.polls

    # -- measuring ---------------------------------------------------------------------------
    def start(self) -> EnergyMeter:
        """Start measuring (idempotent); with ``idle_baseline_s`` it first waits that long, measuring idle power."""
        if self._t0 is not None:
            return self
        self._sync()  # GPU work queued before the block must not land in it (readers take baselines next)
        try:
            self._build_readers()
            want_machine = self.wall_meter is not None
            self._machine_tdp = tdp_check.assign_tdps(self.readers, self.cpu_tdp_w, self.tdp, want_machine)
        except Exception as exc:  # never let set-up break the user's run
            self.notes.append(f"meter set-up failed: {type(exc).__name__}: {exc}")
        self._readings.start()
        if self.idle_baseline_s:
            self._measure_idle(self.idle_baseline_s)
        self._t0 = time.perf_counter()
        self._unix0 = time.time()
        self.timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._readings.base = self._readings.read_all(0.0)
        est = self._readings.estimate()
        self._cpu_s_base = est.cpu_seconds if est else 0.0
        self._project_commit = project_commit()
        return self

    def _measure_idle(self, seconds: float) -> None:
        """Mean power of all readers over ``seconds`` of sleep before the block: the idle baseline."""
        try:
            t0, before = time.perf_counter(), self._readings.read_all(0.0)
            time.sleep(seconds)
            t1, after = time.perf_counter(), self._readings.read_all(seconds)
            self._idle_w = sum(after[id(r)] - before[id(r)] for r in self.readers) / (t1 - t0)
        except Exception as exc:
            self.notes.append(f"idle baseline failed ({type(exc).__name__}: {exc}); no dynamic energy")

    def _sync(self) -> None:
        if self.sync_cuda and "torch" in sys.modules:
            try:
                torch = sys.modules["torch"]
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    torch.cuda.synchronize()
            except Exception:  # a failed sync must not end the user's run
                pass

    def _snapshot(self) -> tuple[float, Snap]:
        """(seconds since start, cumulative joules per reader)."""
        self._sync()
        t = time.perf_counter() - (self._t0 or time.perf_counter())
        return t, self._readings.read_all(t)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`: windows may be opened and :meth:`read` reads live."""
        return self._t0 is not None and self.record is None

    def mark(self, label: str) -> None:
        """Remember the energy used from the start up to now under ``label`` (e.g. "epoch 3")."""
        if not self.running:
            return
        try:
            t, snap = self._snapshot()
            self._marks.append((label, t, snap))
        except Exception as exc:
            self.notes.append(f"mark {label!r} failed: {exc}")

    @contextlib.contextmanager
    def section(self, label: str) -> Iterator[Measurement]:
        """Measure a sub-block (an epoch, a step) into ``record.sections``; yields its :class:`Measurement`.

        The forgiving form of :meth:`window`: on a meter that is not running it measures nothing
        (the yielded measurement stays NaN) instead of raising, so library code can open sections
        whether or not its caller metered it.

        Args:
            label: the section's name in the record.
        """
        key, pending = object(), Measurement(label)
        started = self.running
        if started:
            try:
                self._begin(key, "section", label)
            except Exception as exc:
                self.notes.append(f"section {label!r} failed: {exc}")
                started = False
        try:
            yield pending
        finally:
            if started:
                fill(pending, self._end(key))

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[Measurement]:
        """Measure the ``with`` block as a window; yields a :class:`Measurement` filled in when it exits.

        Windows may nest and overlap, and two windows may share a name. Each also goes to
        ``record.sections`` with its per-component methods, scopes and bounds. A window still open
        when the meter stops ends there (noted in the record). An exception in the block ends the
        window and propagates.

        Raises:
            RuntimeError: the meter is not running. A window is part of a metered block, so it does
                not start the meter itself (nothing would stop it): open it inside
                ``with EnergyMeter(...) as meter:`` or after ``meter.start()``.

        Args:
            name: the window's name in the measurement and the record.
        """
        key, pending = object(), Measurement(name)
        self._begin(key, "window", name)
        try:
            yield pending
        finally:
            fill(pending, self._end(key))

    def begin_window(self, name: str) -> None:
        """Open a window that :meth:`end_window` closes, for code that cannot use ``with``.

        Raises:
            RuntimeError: the meter is not running (see :meth:`window`).
            ValueError: a window of that name is already open (names identify these windows).

        Args:
            name: the window's name; pass the same to :meth:`end_window`.
        """
        if name in self._open:
            raise ValueError(f"EnergyMeter.begin_window({name!r}): a window of that name is already open; end it first")
        self._begin(name, "window", name)

    def end_window(self, name: str) -> Measurement:
        """Close the window :meth:`begin_window` opened and return its :class:`Measurement`.

        After :meth:`stop` it returns the window as the stop ended it.

        Raises:
            ValueError: no window of that name is open.

        Args:
            name: the name given to :meth:`begin_window`.
        """
        if name not in self._open and name not in self._closed_at_stop:
            opened = sorted(str(k) for k in self._open if isinstance(k, str))
            raise ValueError(
                f"EnergyMeter.end_window({name!r}): no window of that name is open (open: {opened}); "
                "call begin_window first"
            )
        return self._end(name)

    def read(self) -> Measurement:
        """The energy from :meth:`start` until now, without stopping: for budgets and progress lines.

        It reads every counter once (no waiting for the sampling thread; queued CUDA work is
        synchronised first, as at a section's ends, so that it counts). After :meth:`stop` it is
        the whole block's measurement.

        Raises:
            RuntimeError: the meter was never started.
        """
        if self.record is not None:
            return Measurement.from_record(self.record)
        if self._t0 is None:
            raise RuntimeError(
                "EnergyMeter.read(): the meter is not started; call meter.start() or read inside "
                "`with EnergyMeter(...) as meter:`"
            )
        t, snap = self._snapshot()
        skip, _ = self._readings.mirrored(snap)
        return Measurement.of(self.label, 0.0, t, self._readings.components(snap, skip))

    def _begin(self, key: object, what: str, name: str) -> None:
        if not self.running:
            state = "stopped (its record is final)" if self.record is not None else "not started"
            raise RuntimeError(
                f"EnergyMeter.{what}({name!r}): the meter is {state}; open windows inside "
                "`with EnergyMeter(...) as meter:` or between meter.start() and meter.stop()"
            )
        t, snap = self._snapshot()
        self._open[key] = (what, name, t, snap)

    def _end(self, key: object) -> Measurement:
        """End the open span ``key``: keep it for the record and return its measurement."""
        if key in self._closed_at_stop:
            return self._closed_at_stop.pop(key)
        what, name, t0, s0 = self._open.pop(key)
        try:
            t1, s1 = self._snapshot()
            self._sections.append((name, t0, s0, t1, s1))
            self._readings.note_zero_gpu(s0, s1, t1 - t0, f"{what} {name!r}")
            skip, _ = self._readings.mirrored(s1)
            return Measurement.of(name, t0, t1 - t0, self._readings.components(s1, skip, start=s0))
        except Exception as exc:  # never let bookkeeping break the user's run
            self.notes.append(f"{what} {name!r} failed: {exc}")
            return Measurement(name, start_s=t0)

    def _wall(self, wall_s: float, others_j: float) -> ComponentEnergy | None:
        if self.wall_meter is None:
            return None
        joules, note = wall_energy(self.wall_meter, self._unix0, self._unix0 + wall_s)
        if joules is None:
            self.notes.append(str(note))
            return None
        if others_j > 0:
            self.notes.append(
                f"wall meter: {joules:.4g} J over the window = {joules / others_j:.3g} x the sum of the other "
                "components (power supply losses, fans, board and every other process are in the wall figure)"
            )
        tdp_w, tdp_source = self._machine_tdp
        return ComponentEnergy(
            "wall",
            f"wall meter {self.wall_meter}",
            joules,
            er.METHOD_WALL,
            er.SCOPE_DEVICE,
            tdp_w=tdp_w,
            tdp_source=tdp_source,
        )

    def stop(self, exit_code: int | None = None, command: str = "") -> EnergyRecord:
        """Stop, release NVML and return the :class:`EnergyRecord` (idempotent)."""
        if self.record is not None:
            return self.record
        self.start()
        wall, snap = self._snapshot()
        still_open = self._end_open_spans(wall, snap)
        self._release()
        skip, comps = self._block_components(wall, snap)
        self._keep_ended_windows(still_open, wall, snap, skip)
        self.record = self._assemble(wall, comps, skip, exit_code, command)
        return self.record

    def _end_open_spans(self, wall: float, snap: Snap) -> dict[object, tuple[str, str, float, Snap]]:
        """End every window and section still open at ``wall`` s (noted), and return them by key."""
        still_open = dict(self._open)
        self._open.clear()
        for what, name, t0, s0 in still_open.values():
            self._sections.append((name, t0, s0, wall, snap))
            self.notes.append(f"{what} {name!r} was still open when the meter stopped; it ends there")
        return still_open

    def _release(self) -> None:
        """Stop the sampling thread, close the readers and shut NVML down; nothing here may raise."""
        self._readings.stop()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def _block_components(self, wall: float, snap: Snap) -> tuple[frozenset[int], list[ComponentEnergy]]:
        """``(mirrored RAPL zones, the block's components)``, the wall meter's check last when there is one.

        A total that adds a device-scope counter to a process-tree estimate is noted, since the two
        do not cover the same thing.
        """
        try:
            self._readings.note_zero_gpu(self._readings.base, snap, wall, "the block")
            skip = self._readings.mirrors(snap)
            comps = self._readings.components(snap, skip)
        except Exception as exc:  # never lose the record to bookkeeping
            self.notes.append(f"record assembly failed ({type(exc).__name__}: {exc})")
            skip, comps = frozenset(), []
        scopes = sorted({c.scope for c in comps})
        if len(scopes) > 1:
            parts = "; ".join(f"{s}: {', '.join(sorted({c.kind for c in comps if c.scope == s}))}" for s in scopes)
            self.notes.append(
                f"the total adds energies of different scopes ({parts}): device-scope counters include idle "
                "power and other processes, the process-tree estimate only this command's share"
            )
        wall_comp = self._wall(wall, sum(c.joules for c in comps))
        if wall_comp is not None:
            comps.append(wall_comp)
        return skip, comps

    def _keep_ended_windows(
        self, still_open: dict[object, tuple[str, str, float, Snap]], wall: float, snap: Snap, skip: frozenset[int]
    ) -> None:
        """The measurements of the spans the stop ended: what end_window / the window's block will get."""
        for key, (what, name, t0, s0) in still_open.items():
            try:
                parts = self._readings.components(snap, skip, start=s0)
                self._closed_at_stop[key] = Measurement.of(name, t0, wall - t0, parts)
            except Exception as exc:
                self.notes.append(f"{what} {name!r} failed: {exc}")
                self._closed_at_stop[key] = Measurement(name, start_s=t0)

    def _assemble(
        self, wall: float, comps: list[ComponentEnergy], skip: frozenset[int], exit_code: int | None, command: str
    ) -> EnergyRecord:
        """The block's record: its components, sections and marks, the CPU estimate's figures, the
        conversion factors, the notes and where the code came from."""
        est = self._readings.estimate()
        cpu_s = (est.cpu_seconds - self._cpu_s_base) if est else math.nan
        cpu_dev = next((r.device for r in self.readers if r.kind == "cpu"), er.cpu_brand() if self.cpu else "")
        interval, base = self._readings.interval, self._readings.base
        return EnergyRecord(
            label=self.label,
            timestamp=self.timestamp,
            wall_s=wall,
            components=comps,
            cpu_device=cpu_dev,
            cpu_tdp_w=est.tdp.tdp_w if est else float("nan"),
            cpu_tdp_match=est.tdp.match if est else "",
            cpu_utilisation=est.utilisation(wall, cpu_s) if est else float("nan"),
            pue=float(self.pue.value),
            pue_name=str(self.pue.name),
            pue_source=str(self.pue.source),
            intensity_code=str(self.intensity.code),
            intensity_g_per_kwh=float(self.intensity.g_per_kwh),
            intensity_source=str(self.intensity.source),
            sections=[interval(lab, t0, s0, t1, s1, skip) for lab, t0, s0, t1, s1 in self._sections],
            marks=[interval(lab, 0.0, base, t, s, skip) for lab, t, s in self._marks],
            notes=list(self.notes),
            hostname=socket.gethostname(),
            git_commit=git_commit(),
            command=command,
            exit_code=exit_code,
            cpu_w_per_thread=est.w_per_cpu if est else math.nan,
            cpu_threads=est.thread_power.threads if est and est.thread_power else None,
            idle_baseline_s=self.idle_baseline_s if self.idle_baseline_s else math.nan,
            idle_w=self._idle_w,
            project_commit=self._project_commit,
        )

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.notes.append(f"block raised {exc_type.__name__}")
        self.stop()
        return False  # never swallow the user's exception
