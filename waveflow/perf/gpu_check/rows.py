"""What every part of the GPU check shares: its settings and time budgets, the row each number
becomes, and the table and summary the rows are written to.

A row is a plain dict with the columns of :data:`COLUMNS`, so it crosses a process boundary as JSON
(a part run in a child process hands its rows back that way) and lands in the CSV unchanged.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...files import atomic_write
from ...paths import BUILD, DATA, RESULTS

COLUMNS = ("part", "item", "status", "seconds", "value", "unit", "paper", "detail")
#: The whole check must end within 8 minutes on one data-centre GPU; each part gets at most its share.
TOTAL_BUDGET_S = 450.0
#: Parts in the order they run: the quick, pass/fail ones first, the long measurements last.
PART_BUDGET_S = {
    "tests": 150.0,
    "nvml": 60.0,
    "resume": 60.0,
    "ddp": 120.0,
    "e_train": 120.0,
    "e_gen_WF2": 130.0,
    "vocoders": 120.0,
    "e_gen_WF4": 150.0,
}
PARTS = tuple(PART_BUDGET_S)
PAPER_TABLE = DATA / "paper" / "table2.csv"
PAPER_GPU = "NVIDIA TITAN V"


@dataclass
class Settings:
    """What the check runs and where it writes.

    Args:
        quick: shrink every part (seconds of audio, a few steps) for a smoke test.
        device: ``cuda`` (the check's purpose) or ``cpu`` (only with ``quick``: the logic, on the CPU).
        work: scratch folder for runs and checkpoints (emptied at the start).
        energy_log: the check's own energy log, apart from the notebooks' log.
        budget_s: the whole check's time budget.
    """

    quick: bool = False
    device: str = "cuda"
    work: str = str(BUILD / "gpu_check")
    energy_log: str = str(RESULTS / "gpu_check_energy_log.csv")
    budget_s: float = TOTAL_BUDGET_S
    part_budget_s: dict[str, float] = field(default_factory=lambda: dict(PART_BUDGET_S))


def row(part: str, item: str, status: str, value: float = math.nan, unit: str = "", detail: str = "", **kw: Any):
    """One result row (``paper`` is the paper's value where there is one, measured on a TITAN V)."""
    out = {"part": part, "item": item, "status": status, "seconds": math.nan, "value": value, "unit": unit}
    out.update(paper=kw.pop("paper", math.nan), detail=detail)
    if kw:
        raise TypeError(f"row: unknown fields {sorted(kw)}")
    return out


def paper_value(config: str, column: str) -> float:
    """The paper's value of ``column`` for ``config`` (Table 2, measured on a TITAN V); NaN if absent."""
    with open(PAPER_TABLE, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec["model"] == config:
                return float(rec[column])
    return math.nan


def torch_device(s: Settings) -> torch.device:
    """The device the parts run on: the current CUDA device, or the CPU of a quick logic check."""
    return torch.device("cuda", torch.cuda.current_device()) if s.device == "cuda" else torch.device("cpu")


def model_config(s: Settings, name: str) -> Any:
    """The paper's configuration, or in quick mode the same h with r=8, 2 flows of 2 layers."""
    from ...model import get_config

    config = get_config(name)
    return config.replace(res_channels=8, n_flows=2, n_layers=2) if s.quick else config


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """All rows so far, rewritten atomically (a crash leaves the previous complete file)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))


def summary(rows: list[dict[str, Any]], wall_s: float) -> str:
    """A short text: one line per row, the paper's value beside ours where there is one."""
    device = next((r["detail"] for r in rows if r["part"] == "device"), "unknown device")
    lines = [f"GPU check on {device}: {wall_s:.0f} s"]
    for r in rows:
        if r["part"] == "device":
            continue
        value = "" if math.isnan(r["value"]) else f" {r['value']:.4g} {r['unit']}".rstrip()
        paper = "" if math.isnan(r["paper"]) else f" (paper, {PAPER_GPU}: {r['paper']:.4g})"
        why = f" ({r['detail']})" if r["status"] in ("failed", "timeout") else ""
        lines.append(f"  [{r['status']:<7}] {r['item']}:{value}{paper}{why}")
    bad = [r for r in rows if r["status"] in ("failed", "timeout")]
    lines.append(f"{len(bad)} part(s) failed or timed out" if bad else "every part that ran is ok")
    return "\n".join(lines)
