"""A wall-meter log as a check on the meter: the socket's joules over exactly the measured window.

Smart plugs and PDU exporters write power samples; we accept a CSV with the header
``timestamp,watts`` (Unix seconds, watts), one sample per line, sorted by time. The energy of the
window ``[start, end]`` is the trapezoid integral of the samples, with the power linearly
interpolated at the window's two edges, so a sample period of seconds still gives the window's
energy rather than that of the samples around it.

A wall meter sees the whole machine (power supply losses, fans, board, every process), so its
figure is ``measured:wall-meter`` with scope ``device`` and is stored beside the components, never
added to them; its ratio to their sum is the check. A log that cannot give the window's energy
(missing, not covering the window, unsorted, negative or non-numeric watts) gives one line saying
why and no figure: :func:`wall_energy` never raises.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

HEADER = ("timestamp", "watts")


class WallLogError(ValueError):
    """A wall-meter log that cannot give the energy of the window; the message is one line."""


def read_wall_log(path: str | os.PathLike) -> tuple[list[float], list[float]]:
    """``(timestamps, watts)`` of a ``timestamp,watts`` CSV, checked.

    Raises:
        WallLogError: unreadable file, another header, a non-numeric, non-finite or negative value,
            or timestamps that do not strictly increase; the message names the line.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise WallLogError(f"cannot read it ({type(exc).__name__}: {exc})") from None
    if not rows or tuple(c.strip().lower() for c in rows[0]) != HEADER:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise WallLogError(f"header is {got!r}; expected 'timestamp,watts' (Unix seconds, watts)")
    ts: list[float] = []
    ws: list[float] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise WallLogError(f"line {line} has {len(row)} fields; expected 2 (timestamp,watts)")
        t = _number(row[0], line, "timestamp")
        w = _number(row[1], line, "watts")
        if w < 0:
            raise WallLogError(f"line {line}: watts {row[1].strip()!r} is negative; expected >= 0")
        if ts and t <= ts[-1]:
            raise WallLogError(
                f"line {line}: timestamp {row[0].strip()} is not after {ts[-1]!r}; expected samples sorted by time"
            )
        ts.append(t)
        ws.append(w)
    if len(ts) < 2:
        raise WallLogError(f"{len(ts)} sample(s); expected at least 2 around the window")
    return ts, ws


def _number(text: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise WallLogError(f"line {line}: {column} {text.strip()!r} is not a finite number")
    return value


def _interpolate(ts: list[float], ws: list[float], t: float) -> float:
    """Power at ``t`` (inside the samples' span), linear between the two samples around it."""
    lo, hi = 0, len(ts) - 1
    while hi - lo > 1:  # bisection: the last sample at or before t
        mid = (lo + hi) // 2
        if ts[mid] <= t:
            lo = mid
        else:
            hi = mid
    t0, t1 = ts[lo], ts[hi]
    return ws[lo] + (ws[hi] - ws[lo]) * (t - t0) / (t1 - t0)


def integrate(ts: list[float], ws: list[float], start: float, end: float) -> float:
    """Joules between ``start`` and ``end`` (Unix s): trapezoids, interpolated at both edges.

    Raises:
        WallLogError: the samples do not cover ``[start, end]``.
    """
    if end < start:
        raise WallLogError(f"window ends ({end!r}) before it starts ({start!r})")
    if ts[0] > start or ts[-1] < end:
        raise WallLogError(
            f"samples cover {ts[0]:.3f}-{ts[-1]:.3f} but the window is {start:.3f}-{end:.3f}; "
            "expected the log to start before and end after the measured block"
        )
    points = [(start, _interpolate(ts, ws, start))]
    points += [(t, w) for t, w in zip(ts, ws) if start < t < end]
    points.append((end, _interpolate(ts, ws, end)))
    return sum(0.5 * (w0 + w1) * (t1 - t0) for (t0, w0), (t1, w1) in zip(points, points[1:]))


def wall_energy(path: str | os.PathLike, start: float, end: float) -> tuple[float | None, str | None]:
    """``(joules, None)`` over ``[start, end]`` from a wall-meter log, or ``(None, note)`` saying why not.

    Never raises: a bad log is the user's input to a check, not a reason to lose the measurement.
    """
    try:
        ts, ws = read_wall_log(path)
        return integrate(ts, ws, start, end), None
    except WallLogError as exc:
        return None, f"wall meter {path}: {exc}; no wall figure"
    except Exception as exc:  # anything unforeseen in a user's file
        return None, f"wall meter {path}: {type(exc).__name__}: {exc}; no wall figure"
