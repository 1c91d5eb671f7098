"""``@measure_energy``: meter every call of a function, the way CodeCarbon's decorator does.

    @measure_energy(label="vocode", cpu_tdp_w=120, log=True)
    def vocode(mel):
        ...

    vocode(mel)
    print(vocode.last_measurement.joules, vocode.last_measurement.joules_high)

Each call runs under its own :class:`~waveflow.energy.EnergyMeter` (a meter measures one block, so
one meter cannot serve several calls); the function's result and exceptions pass through untouched.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .log import DEFAULT_LOG, append_record
from .measurement import Measurement
from .meter import EnergyMeter
from .record import EnergyRecord

__all__ = ["measure_energy"]


def measure_energy(
    func: Callable[..., Any] | None = None,
    /,
    *,
    label: str | None = None,
    log: str | Path | bool | None = None,
    **meter_kwargs: Any,
) -> Any:
    """Meter each call of the decorated function; ``@measure_energy`` or ``@measure_energy(...)``.

    After a call (also one that raised) the wrapper holds ``last_measurement`` (a
    :class:`~waveflow.energy.Measurement`: seconds, joules with bounds, per-component methods and
    scopes) and ``last_record`` (the full :class:`~waveflow.energy.EnergyRecord`); both are None
    before the first call. Concurrent calls each get their own meter; the attributes hold the call
    that finished last. ``async def`` functions are metered over their whole run; generator
    functions are refused, since a call only creates the generator and the work happens later.

    Args:
        func: the function, when the decorator is used without parentheses.
        label: the records' label (default: the function's qualified name).
        log: append each call's record to the CSV energy log: True for
            :data:`~waveflow.energy.DEFAULT_LOG`, a path for another file, None or False for none.
            A log that cannot be written to gives a ``RuntimeWarning``, never a failed call.
        **meter_kwargs: :class:`~waveflow.energy.EnergyMeter` settings (``intensity``, ``pue``,
            ``cpu_tdp_w``, ``gpu``, ...), checked when the function is decorated.

    Raises:
        ValueError: a bad meter setting (as :class:`~waveflow.energy.EnergyMeter` raises).
        TypeError: a generator function, or something that is not callable.
    """
    log_path = DEFAULT_LOG if log is True else (Path(log) if log not in (None, False) else None)

    def decorate(f: Callable[..., Any]) -> Any:
        if not callable(f):
            raise TypeError(f"measure_energy: expected a function, got {type(f).__name__}")
        if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
            raise TypeError(
                f"measure_energy: {f.__qualname__} is a generator function; a call only creates the generator. "
                "Meter the loop that consumes it with EnergyMeter or meter.window instead"
            )
        name = label if label is not None else f.__qualname__
        EnergyMeter(name, **meter_kwargs)  # bad settings fail here, at decoration, not at the first call

        def finish(meter: EnergyMeter) -> None:
            record = meter.record
            if record is None:
                return
            wrapper.last_record = record
            wrapper.last_measurement = Measurement.from_record(record)
            if log_path is not None:
                _append(record, log_path)

        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                meter = EnergyMeter(name, **meter_kwargs)
                try:
                    with meter:
                        return await f(*args, **kwargs)
                finally:
                    finish(meter)

        else:

            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                meter = EnergyMeter(name, **meter_kwargs)
                try:
                    with meter:
                        return f(*args, **kwargs)
                finally:
                    finish(meter)

        wrapper.last_measurement = None
        wrapper.last_record = None
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _append(record: EnergyRecord, path: Path) -> None:
    """Append to the log; a refused or unwritable log warns, so the decorated call still returns."""
    try:
        append_record(record, path)
    except (OSError, ValueError) as exc:
        warnings.warn(f"measure_energy: record not logged: {exc}", RuntimeWarning, stacklevel=4)
