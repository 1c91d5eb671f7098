"""What every figure of the notebooks shares: the colours, the paper's labels, and the helpers that
name an energy axis's method and draw an estimate's interval.

Labelling rules, kept by every energy plot: bars of extrapolated quantities are hatched; every
energy **axis** names how its numbers were obtained (:func:`_axis_label`, not just a neighbouring
panel); an estimated energy is drawn with its interval as an error bar (:func:`_yerr`: low and high
bound from the meter, carried through extrapolation); and the paper's E_train is labelled a
Carbontracker *prediction*, with its PUE, not a measurement (:data:`PAPER_E_TRAIN`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

PAPER_COLOR = "0.35"
OURS_COLOR = "tab:blue"
#: How the paper's numbers were obtained, for legends and the figure CSVs: its E_train is Carbontracker's
#: prediction, with Carbontracker's PUE in it, not a measurement.
PAPER_E_TRAIN = "paper: Carbontracker prediction, 4 × TITAN V"
PAPER_E_TRAIN_METHOD = (
    "predicted by the authors with Carbontracker (whole training extrapolated from measured epochs; "
    "includes Carbontracker's PUE, about 1.6, version not stated)"
)
PAPER_E_GEN = "paper: 1 × TITAN V"
PAPER_E_GEN_METHOD = "reported by the authors (10 × 10 s on 1 × TITAN V; tool and PUE not stated)"


def _method_note(frame: pd.DataFrame, column: str = "energy_method") -> str:
    return "; ".join(sorted(set(frame[column].astype(str))))


def short_method(label: str) -> str:
    """``"extrapolated from 2 steps (estimated:tdp×utilisation)"`` -> ``"extrapolated, estimated:tdp×utilisation"``."""
    return re.sub(r" from [^(]*\(", ", ", label).rstrip(")")


def _axis_label(base: str, frame: pd.DataFrame, column: str) -> str:
    """An energy axis label that names the method(s) of the numbers on it."""
    methods = "; ".join(sorted({short_method(str(m)) for m in frame[column]}))
    return f"{base}\n[{methods}]"


def _yerr(frame: pd.DataFrame, value: str, stem: str | None = None) -> np.ndarray | None:
    """Asymmetric error bars ``[[value - low], [high - value]]`` from ``{stem}_low``/``_high``, or None
    when the frame has no bounds or they equal the value (a measurement has no modelled interval)."""
    stem = stem or value
    low, high = f"{stem}_low", f"{stem}_high"
    if low not in frame or high not in frame:
        return None
    v = frame[value].to_numpy(dtype=float)
    err = np.vstack([v - frame[low].to_numpy(dtype=float), frame[high].to_numpy(dtype=float) - v])
    return err if np.nanmax(np.abs(err)) > 0 else None


def _log_floor(ax, *columns) -> None:
    """On a log axis, start below the smallest bar or low bound, so no bar is cut by the axis."""
    values = np.concatenate([np.asarray(c, dtype=float).ravel() for c in columns])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size:
        ax.set_ylim(bottom=float(values.min()) / 2)


def _pue_note(frame: pd.DataFrame) -> str:
    pues = sorted({float(p) for p in frame["pue"]}) if "pue" in frame else []
    return f"PUE {', '.join(f'{p:g}' for p in pues)}" if pues else "PUE not stated"
