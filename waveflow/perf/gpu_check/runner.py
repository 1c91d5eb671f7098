"""Running the GPU check: the parts by name, each run in a child process with a hard time limit
(or in this process), the budget shared among them, and the ``gpu-check`` command.

A child is ``python -m waveflow gpu-check --part NAME``: the same command with hidden options, which
runs one part and saves its rows to a JSON file after each new row, so a part that hangs or takes
the CUDA context down still leaves the rows it made.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ...files import atomic_write
from ...paths import RESULTS, ROOT
from .energy_parts import part_device, part_e_gen_wf2, part_e_gen_wf4, part_e_train, part_nvml
from .path_parts import part_ddp, part_resume, part_tests
from .rows import PARTS, Settings, row, summary, write_csv
from .vocoder_part import part_vocoders

PART_FUNCTIONS: dict[str, Callable[[Settings], Iterable[dict[str, Any]]]] = {
    "tests": part_tests,
    "nvml": part_nvml,
    "e_gen_WF2": part_e_gen_wf2,
    "vocoders": part_vocoders,
    "e_gen_WF4": part_e_gen_wf4,
    "e_train": part_e_train,
    "resume": part_resume,
    "ddp": part_ddp,
}


# ----------------------------------------------------------------------------------------------
# running the parts
def run_part_inline(
    name: str, s: Settings, emit: Callable[[list[dict[str, Any]]], None] | None = None
) -> list[dict[str, Any]]:
    """Run one part in this process; an exception becomes a ``failed`` row after the rows it made.

    ``emit`` is called with the rows so far after each new row (a child process saves them, so a
    part stopped at its time limit keeps the numbers it had).
    """
    rows: list[dict[str, Any]] = []
    try:
        for r in PART_FUNCTIONS[name](s):
            rows.append(r)
            if emit is not None:
                emit(rows)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        rows.append(row(name, name, "failed", detail=f"{type(exc).__name__}: {text}"))
    return rows


def run_part_isolated(name: str, s: Settings, timeout: float) -> list[dict[str, Any]]:
    """Run one part in a child process of its own, killed (with its children) past ``timeout``."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "waveflow", "gpu-check", "--part", name, "--rows-out", str(rows_path)]
        cmd += ["--device", s.device, "--settings", json.dumps(asdict(s))]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            done = json.loads(rows_path.read_text()) if rows_path.exists() else []
            return done + [row(name, name, "timeout", detail=f"stopped after its {timeout:.0f} s limit")]
        if rows_path.exists():
            return json.loads(rows_path.read_text())
        last = (output.strip().splitlines() or ["no output"])[-1][:300]
        return [row(name, name, "failed", detail=f"exit code {proc.returncode}: {last}")]


def run_check(
    s: Settings,
    parts: tuple[str, ...] = PARTS,
    isolate: bool = True,
    csv_path: str | Path = RESULTS / "gpu_check.csv",
    summary_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run the parts in order within the budget; write the CSV after each and the summary at the end.

    Args:
        s: the settings.
        parts: which parts (default all, in :data:`PARTS` order).
        isolate: each part in a child process with a hard time limit (the default); False runs
            them in this process (faster to start, no hard limit: for quick checks and tests).
        csv_path: the results table.
        summary_path: the text summary (default: beside the CSV, ``<stem>_summary.txt``).
    """
    unknown = [p for p in parts if p not in PART_FUNCTIONS]
    if unknown:
        raise ValueError(f"gpu-check: unknown part(s) {unknown}; expected some of {', '.join(PARTS)}")
    shutil.rmtree(s.work, ignore_errors=True)
    t_start = time.perf_counter()
    rows = part_device(s)
    write_csv(rows, csv_path)
    print(f"[gpu-check] {rows[0]['detail']}", flush=True)
    for name in parts:
        left = s.budget_s - (time.perf_counter() - t_start)
        limit = min(s.part_budget_s[name], left)
        if limit < 10:
            rows.append(row(name, name, "skipped", detail="the check's time budget was spent"))
            print(f"[gpu-check] {name}: skipped (budget spent)", flush=True)
            continue
        print(f"[gpu-check] {name}: running (limit {limit:.0f} s) ...", flush=True)
        t0 = time.perf_counter()
        got = run_part_isolated(name, s, limit) if isolate else run_part_inline(name, s)
        seconds = time.perf_counter() - t0
        for r in got:
            r["seconds"] = seconds
            value = "" if math.isnan(r["value"]) else f" = {r['value']:.4g} {r['unit']}"
            print(f"[gpu-check] {name}: {r['status']}: {r['item']}{value} ({seconds:.1f} s)", flush=True)
        rows += got
        write_csv(rows, csv_path)
    text = summary(rows, time.perf_counter() - t_start)
    summary_path = (
        Path(summary_path) if summary_path else Path(csv_path).with_name(Path(csv_path).stem + "_summary.txt")
    )
    atomic_write(summary_path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    print(text, flush=True)
    print(f"[gpu-check] wrote {csv_path} and {summary_path}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# CLI: python -m waveflow gpu-check
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gpu-check``."""
    parser.add_argument("--quick", action="store_true", help="shrink every part (a smoke test of the check itself)")
    parser.add_argument(
        "--device", default="cuda", choices=("cuda", "cpu"), help="cuda (default); cpu only with --quick"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts ({','.join(PARTS)})")
    parser.add_argument(
        "--out", default=str(RESULTS / "gpu_check.csv"), help="results CSV (build/results/gpu_check.csv)"
    )
    parser.add_argument("--no-isolate", action="store_true", help="run the parts in this process (no hard time limits)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in a child process
    parser.add_argument("--rows-out", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Run the check; exit 1 when a part failed or timed out (after writing every row), 0 otherwise.
    Without CUDA, say so in one line and exit 0."""
    if args.part:  # a child of run_part_isolated
        s = Settings(**json.loads(args.settings)) if args.settings else Settings(device=args.device)

        def save(rows: list[dict[str, Any]]) -> None:
            atomic_write(args.rows_out, lambda tmp: Path(tmp).write_text(json.dumps(rows), encoding="utf-8"))

        save(run_part_inline(args.part, s, emit=save))
        return 0
    if args.device == "cpu" and not args.quick:
        raise ValueError(
            "--device cpu: the full check measures GPUs; expected --device cuda, or --quick for a smoke test"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU visible to torch {torch.__version__}; nothing to check (exit 0)")
        return 0
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    s = Settings(quick=args.quick, device=args.device)
    rows = run_check(s, parts, isolate=not args.no_isolate, csv_path=args.out)
    return 1 if any(r["status"] in ("failed", "timeout") for r in rows) else 0
