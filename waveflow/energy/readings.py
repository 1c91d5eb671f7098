"""The readers of one :class:`~waveflow.energy.EnergyMeter`, read as one: snapshots, and the figures between two.

Every reader gives cumulative joules, so a snapshot (:data:`Snap`: joules per reader, keyed by the
reader's ``id``) taken at each end of a span is all a window, a section, a mark or the whole block
needs; its figures are the differences, per component with their method, scope and bounds
(:meth:`Readings.components`). Readers that need periodic attention (NVML power, RAPL wrap-around)
are polled by one background thread, started only when some reader asks for it.

Nothing here raises on a reader's failure: a reader that cannot be read keeps its last value, one
that cannot be polled is dropped from the polling, and each is noted once in the meter's notes.
"""

from __future__ import annotations

import contextlib
import threading
import time

from . import readers as er
from .record import ComponentEnergy, Interval

__all__ = ["Readings", "Snap"]

#: Cumulative joules per reader, keyed by ``id(reader)``.
Snap = dict[int, float]


class Readings:
    """The meter's readers read together, sampled in the background when one of them needs it.

    Args:
        readers: the meter's readers; the list is shared, so readers the meter adds before
            :meth:`start` are read too.
        notes: the meter's notes; read failures, stopped polling, GPU counters that did not move and
            mirrored RAPL zones are appended to it.
    """

    def __init__(self, readers: list[er.EnergyReader], notes: list[str]) -> None:
        self.readers, self.notes = readers, notes
        self.base: Snap = {}  # the snapshot at the meter's start: where the block's figures begin
        self._last: Snap = {}
        self._read_failures: dict[int, int] = {}
        self._zero_noted: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll_cpu_s = 0.0  # CPU seconds of the sampling thread, and its wake-ups: for the overhead bench
        self.polls = 0

    def start(self) -> None:
        """Start from zero joules per reader, and the sampling thread if some reader polls."""
        self._last = {id(r): 0.0 for r in self.readers}
        if any(r.poll_interval_s for r in self.readers):
            self._thread = threading.Thread(target=self._poll_loop, name="EnergyMeterPoll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the sampling thread (waiting at most 2 s for it) and close every reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for r in self.readers:
            with contextlib.suppress(Exception):
                r.close()

    def _poll_loop(self) -> None:
        pollers = [r for r in self.readers if r.poll_interval_s]
        due = {id(r): 0.0 for r in pollers}
        interval = min(r.poll_interval_s for r in pollers)
        cpu0 = time.thread_time()
        while not self._stop.wait(interval):
            self.poll_cpu_s = time.thread_time() - cpu0  # the sampler's own CPU use, for the overhead bench
            self.polls += 1
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

    def read_all(self, t: float) -> Snap:
        """Cumulative joules per reader at ``t`` s; a failing reader keeps its last value (noted once)."""
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
        return dict(self._last)

    def estimate(self) -> er.CpuUtilisationEstimate | None:
        """The CPU estimate among the readers, if the CPU is estimated."""
        return next((r for r in self.readers if isinstance(r, er.CpuUtilisationEstimate)), None)

    def note_zero_gpu(self, start: Snap, end: Snap, seconds: float, what: str) -> None:
        """Note an NVML energy counter that did not move over a span > 0 s (once per GPU)."""
        for r in self.readers:
            if isinstance(r, er.NvmlEnergyCounter) and id(r) not in self._zero_noted:
                if seconds > 0 and end[id(r)] - start.get(id(r), 0.0) == 0:
                    self._zero_noted.add(id(r))
                    self.notes.append(er.zero_energy_note(r.device, what, seconds))

    def mirrored(self, end: Snap) -> tuple[frozenset[int], list[str]]:
        """RAPL package zones that mirror another from the start to ``end``, and a note for each."""
        zones = {r.device: r for r in self.readers if isinstance(r, er.RaplDomain) and r.kind == "cpu"}
        if len(zones) < 2:
            return frozenset(), []
        deltas = {d: 1e6 * (end[id(r)] - self.base.get(id(r), 0.0)) for d, r in zones.items()}
        mirrors = er.mirrored_zones(deltas)
        notes = [
            f"RAPL zone {mirror} advanced by the same energy as {kept} ({deltas[kept] / 1e6:.6g} J, within "
            f"{er.RAPL_MIRROR_TOLERANCE_UJ:g} µJ): one counter mirrored per die; counted once"
            for mirror, kept in mirrors.items()
        ]
        return frozenset(id(zones[m]) for m in mirrors), notes

    def mirrors(self, end: Snap) -> frozenset[int]:
        """RAPL package zones that mirror another over the block (kept out of every sum, noted)."""
        skip, notes = self.mirrored(end)
        self.notes += notes
        return skip

    def components(self, end: Snap, skip: frozenset[int], start: Snap | None = None) -> list[ComponentEnergy]:
        """Per-reader figures from ``start`` (default: the meter's start) to ``end``, with their bounds."""
        start = self.base if start is None else start
        comps = []
        for r in self.readers:
            if id(r) in skip:
                continue
            joules = end[id(r)] - start.get(id(r), 0.0)
            if r.estimated:
                comps.append(
                    ComponentEnergy(
                        r.kind,
                        r.device,
                        joules,
                        r.method,
                        r.scope,
                        low=joules * r.low_factor,
                        high=joules * r.high_factor,
                    )
                )
            else:  # a measurement: no modelled interval, and the TDP the TDP x time check holds it against
                comps.append(
                    ComponentEnergy(r.kind, r.device, joules, r.method, r.scope, tdp_w=r.tdp_w, tdp_source=r.tdp_source)
                )
        return comps

    def interval(self, label: str, t0: float, s0: Snap, t1: float, s1: Snap, skip: frozenset[int]) -> Interval:
        """A span of the record, with joules per kind and the components behind them."""
        comps = self.components(s1, skip, start=s0)
        by_kind: dict[str, float] = {}
        for c in comps:
            by_kind[c.kind] = by_kind.get(c.kind, 0.0) + c.joules
        return Interval(label, t0, t1, by_kind, tuple(comps))
