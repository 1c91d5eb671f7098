"""What every metered E_train and E_gen row shares: the energy interval with PUE, the columns that
say how the energy was obtained and on which hardware, and the append to the energy log.

:mod:`~waveflow.experiments.measure` (training) and :mod:`~waveflow.experiments.inference`
(synthesis) both build their rows from these, so the two tables carry the same energy columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..energy import EnergyRecord, append_record


def bounds(record: EnergyRecord) -> tuple[float, float]:
    """``(low, high)`` joules of a record with PUE: the interval of its estimated components."""
    return record.energy_j_low * record.pue, record.energy_j_high * record.pue


def log_record(record: EnergyRecord, log: bool | str | Path) -> None:
    """Append to the energy log: True = the default ``build/results/energy_log.csv``, False = not at all."""
    if log is not False:
        append_record(record, None if log is True else log)


def energy_columns(record: EnergyRecord, low: float, high: float) -> dict[str, Any]:
    """The columns every E_train and E_gen row shares: energy with PUE and its interval, how it was
    obtained, what it covers, and on which hardware; and, where a component was measured, what the
    paper's TDP × time method would have said for the same window (``tdp_time_j``) and measured / that
    (``tdp_ratio``; empty when nothing was measured: an estimate compared with itself says nothing)."""
    checks = record.tdp_checks()
    tdp_time_j = sum(c.tdp_time_j for c in checks)
    measured_j = sum(c.measured_j for c in checks)
    return {
        "energy_j": record.energy_j,
        "pue": record.pue,
        "energy_j_pue": record.energy_j_pue,
        "energy_j_pue_low": low,
        "energy_j_pue_high": high,
        "energy_method": record.methods_label(),
        "energy_scope": record.scope(),
        "hardware": record.hardware_label(),
        "tdp_time_j": tdp_time_j if checks else float("nan"),
        "tdp_ratio": measured_j / tdp_time_j if checks and tdp_time_j > 0 else float("nan"),
    }


def machine_label() -> str:
    """The machine a figure came from: host, CPU brand and cores, GPUs (for the figure CSVs)."""
    import os
    import socket

    import torch

    from ..energy.readers import cpu_brand

    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no GPU"
    return f"{socket.gethostname()}: {cpu_brand()} ({os.cpu_count()} logical cores), {gpus}"


def with_provenance(table: pd.DataFrame, profile: str, machine: str | None = None) -> pd.DataFrame:
    """``table`` with ``profile``, ``machine`` and ``date`` (UTC) columns, so a figure's CSV says which
    run made it: a committed figure is checked against the README by these columns too."""
    from datetime import datetime, timezone

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return table.assign(profile=profile, machine=machine or machine_label(), date=date)
