"""What a window, a live reading or a decorated call measured: :class:`Measurement`.

A :class:`~waveflow.energy.EnergyRecord` describes a whole metered block once it has ended; a
:class:`Measurement` is the small answer to "how much did this part use?" while the program runs:
``meter.window(name)``, ``meter.end_window(name)``, ``meter.read()`` and
:func:`~waveflow.energy.measure_energy` return one. It keeps the numbers a budget or a comparison
needs (seconds, joules with their low/high bounds) and, per device, the method and scope behind each
figure, so an estimate is never mistaken for a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from .record import WALL, ComponentEnergy, EnergyRecord, Interval, _finite

__all__ = ["Measurement"]

_NAN = math.nan


@dataclass(frozen=True)
class Measurement:
    """Energy of one span of a metered run, without PUE.

    ``joules`` is the reported total (the middle figure of an estimate); ``joules_low`` and
    ``joules_high`` bound it and equal it when every component was measured. The wall meter, a
    check on the other components, is listed in ``components`` when present but never added to
    the totals. A window's measurement is yielded before its block runs and filled in when the
    block exits: until then its numbers are NaN and ``components`` is empty.

    Args:
        name: the window's name (the meter's label for :meth:`EnergyMeter.read`, the decorated
            function's label for :func:`measure_energy`).
        seconds: length of the span (wall clock).
        joules: total joules of the span, every component but a wall meter.
        joules_low: lower bound of ``joules`` (equal to it when nothing is estimated).
        joules_high: upper bound of ``joules`` (equal to it when nothing is estimated).
        components: per-device figures, each with its method (``measured:…``/``estimated:…``),
            scope (``device``/``process-tree``) and, for an estimate, its bounds.
        start_s: seconds from the meter's start to the beginning of the span.
    """

    name: str
    seconds: float = _NAN
    joules: float = _NAN
    joules_low: float = _NAN
    joules_high: float = _NAN
    components: tuple[ComponentEnergy, ...] = ()
    start_s: float = _NAN

    @classmethod
    def of(
        cls, name: str, start_s: float, seconds: float, components: tuple[ComponentEnergy, ...] | list[ComponentEnergy]
    ) -> Measurement:
        """The measurement of ``components`` over a span, with totals and bounds summed from them.

        Args:
            name: the span's name.
            start_s: seconds from the meter's start to the span's beginning.
            seconds: the span's length.
            components: per-device figures over the span.
        """
        counted = [c for c in components if c.kind != WALL]
        return cls(
            name=name,
            seconds=seconds,
            joules=sum(c.joules for c in counted),
            joules_low=sum(c.bounds[0] for c in counted),
            joules_high=sum(c.bounds[1] for c in counted),
            components=tuple(components),
            start_s=start_s,
        )

    @classmethod
    def from_interval(cls, interval: Interval) -> Measurement:
        """The measurement of a record's section, window or mark.

        Args:
            interval: an entry of ``record.sections`` or ``record.marks``.
        """
        if interval.components:
            return cls.of(interval.label, interval.start_s, interval.seconds, interval.components)
        low, high = interval.joules_bounds()
        return cls(interval.label, interval.seconds, interval.total_j, low, high, (), interval.start_s)

    @classmethod
    def from_record(cls, record: EnergyRecord) -> Measurement:
        """The measurement of a whole metered block.

        Args:
            record: what :meth:`EnergyMeter.stop` returned.
        """
        return cls(
            name=record.label,
            seconds=record.wall_s,
            joules=record.energy_j,
            joules_low=record.energy_j_low,
            joules_high=record.energy_j_high,
            components=tuple(record.components),
            start_s=0.0,
        )

    @property
    def end_s(self) -> float:
        """Seconds from the meter's start to the end of the span."""
        return self.start_s + self.seconds

    @property
    def done(self) -> bool:
        """True once the span has ended and its numbers are filled in."""
        return not math.isnan(self.seconds)

    @property
    def estimated(self) -> bool:
        """True when some counted component is an estimate (the total then has a real interval)."""
        return any(c.estimated for c in self.components if c.kind != WALL)

    @property
    def watts(self) -> float:
        """Mean power over the span (NaN for a span of no length or one still open)."""
        return self.joules / self.seconds if self.seconds > 0 else _NAN

    def joules_of(self, kind: str) -> float:
        """Joules of one kind (gpu/cpu/dram/wall), 0.0 when no device of that kind was read.

        Args:
            kind: the component kind.
        """
        return sum(c.joules for c in self.components if c.kind == kind)

    def methods(self) -> dict[str, str]:
        """Method label(s) per kind, e.g. ``{"gpu": "measured:nvml-energy", "cpu": "measured:rapl"}``."""
        kinds = dict.fromkeys(c.kind for c in self.components)
        return {k: ",".join(sorted({c.method for c in self.components if c.kind == k})) for k in kinds}

    def to_dict(self) -> dict[str, Any]:
        """The measurement as JSON-ready values (NaN becomes ``None``); ``by_kind`` sums the components per kind."""
        by_kind: dict[str, float] = {}
        for c in self.components:
            by_kind[c.kind] = by_kind.get(c.kind, 0.0) + c.joules
        return {
            "name": self.name,
            "start_s": _finite(self.start_s),
            "seconds": _finite(self.seconds),
            "joules": _finite(self.joules),
            "joules_low": _finite(self.joules_low),
            "joules_high": _finite(self.joules_high),
            "estimated": self.estimated,
            "by_kind": {k: _finite(v) for k, v in by_kind.items()},
            "components": [c.to_dict() for c in self.components],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of strict JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)


def fill(target: Measurement, source: Measurement) -> None:
    """Give ``target`` (a window's pending measurement, already handed to the user) the values of
    ``source``, once, when the window ends; users only ever see the measurement read-only."""
    for f in fields(Measurement):
        object.__setattr__(target, f.name, getattr(source, f.name))
