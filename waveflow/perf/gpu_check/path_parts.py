"""The parts of the GPU check that pass or fail: the ``requires_gpu`` tests, CUDA resume exactness
(3 + 3 steps against 6 with deterministic kernels) and a DDP job through torchrun and NCCL.

They check that the project's CUDA code paths run and agree with their CPU counterparts; the
number each row carries (passed tests, the largest weight difference, an exit code) says by how
much.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ...paths import ROOT
from .rows import Settings, row


def part_tests(s: Settings) -> list[dict[str, Any]]:
    """The ``requires_gpu`` tests, in a pytest of their own."""
    # Only the files that use the marker: collecting the others would import what this machine may lack.
    targets = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "requires_gpu" in p.read_text()
    )
    if s.quick:
        targets = [t for t in targets if t.endswith(("test_train.py", "test_energy.py"))]
    cmd = [sys.executable, "-m", "pytest", "-m", "requires_gpu", "-q", "-p", "no:cacheprovider", *targets]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=s.part_budget_s["tests"] - 5)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", tail)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    passed = counts.get("passed", 0)
    status = "failed" if failed or proc.returncode not in (0, 5) else ("ok" if passed else "skipped")
    detail = tail if not failed else tail + " | " + " ".join(_failures(proc.stdout))
    return [row("tests", "pytest -m requires_gpu", status, float(passed), "passed", detail)]


def _failures(text: str) -> list[str]:
    """The first ten ``FAILED``/``ERROR`` lines of pytest's output, for the row's detail."""
    return [line.strip() for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))][:10]


def part_resume(s: Settings) -> list[dict[str, Any]]:
    """3 steps, then a resume to 6, against 6 steps in one go: equal losses and weights bit for bit."""
    from ...model import WaveFlowConfig, load_checkpoint
    from ...train import TrainConfig, train

    work = Path(s.work) / "resume"
    shutil.rmtree(work, ignore_errors=True)
    if s.quick:
        model, batch, segment = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=2), 2, 2048
    else:
        model, batch, segment = WaveFlowConfig(n_height=16, res_channels=32, n_flows=4, n_layers=4), 4, 8192

    def cfg(out: str, steps: int) -> TrainConfig:
        return TrainConfig(
            model=model,
            out=str(work / out),
            steps=steps,
            batch_size=batch,
            segment=segment,
            val_clips=0,
            device=s.device,
        )

    full = train(cfg("full", 6), progress=False, deterministic=True)
    train(cfg("split", 3), progress=False, deterministic=True)
    resumed = train(cfg("split", 6), resume=True, progress=False, deterministic=True)
    a = [h["loss"] for h in full.history]
    b = [h["loss"] for h in resumed.history]
    ma, _ = load_checkpoint(full.last_checkpoint)
    mb, _ = load_checkpoint(resumed.last_checkpoint)
    diff = max((p - q).abs().max().item() for p, q in zip(ma.state_dict().values(), mb.state_dict().values()))
    same = a[3:] == b and diff == 0.0
    detail = f"losses of steps 4-6: {a[3:]} vs resumed {b}; deterministic kernels on {s.device}"
    return [
        row("resume", "resume 3+3 vs 6 steps: max |weight difference|", "ok" if same else "failed", diff, "", detail)
    ]


def launch_train(nproc: int, device: str, out: Path, extra: list[str], timeout: float) -> tuple[int, str, str]:
    """``torchrun --standalone --nproc_per_node=N -m waveflow train`` with a tiny model; never outlives ``timeout``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "waveflow", "train", "--config", "WF1", "--res-channels", "8", "--n-flows", "2", "--n-layers", "2"]
    cmd += ["--segment", "2048", "--val-clips", "0", "--device", device, "--seed", "3", "--out", str(out), *extra]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out_text, err_text = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out_text, err_text = proc.communicate()
        return 124, out_text, err_text
    return proc.returncode, out_text, err_text


def part_ddp(s: Settings) -> list[dict[str, Any]]:
    """A DDP job through torchrun and NCCL: 2 GPUs against one process, or 1 GPU that meters itself."""
    from ...model import load_checkpoint
    from ...train import TrainConfig, read_metrics, train

    if s.device != "cuda":
        return [row("ddp", "DDP step", "skipped", detail="no CUDA device (the gloo path is tests/test_distributed.py)")]
    work = Path(s.work) / "ddp"
    shutil.rmtree(work, ignore_errors=True)
    gpus = torch.cuda.device_count()
    timeout = s.part_budget_s["ddp"] - 15
    if gpus < 2:
        rc, out, err = launch_train(1, "cuda", work / "nccl1", ["--steps", "2", "--batch-size", "2"], timeout)
        rows = (work / "nccl1" / "energy_log_devices.csv").read_text().splitlines()[1:] if rc == 0 else []
        gpu_rows = [r for r in rows if ",gpu," in r and "measured:nvml" in r]
        ok = rc == 0 and out.startswith("DDP: world size 1, backend nccl") and len(gpu_rows) == 1
        detail = gpu_rows[0] if gpu_rows else (err.strip().splitlines() or ["no output"])[-1][:300]
        return [
            row("ddp", "NCCL job on 1 GPU meters its GPU", "ok" if ok else "failed", float(rc), "exit code", detail),
            row("ddp", "2-GPU DDP step vs one process", "skipped", detail=f"{gpus} GPU visible; needs 2"),
        ]
    rc, out, err = launch_train(2, "cuda", work / "ddp2", ["--steps", "1", "--batch-size", "4"], timeout)
    if rc != 0:
        return [row("ddp", "2-GPU DDP step vs one process", "failed", float(rc), "exit code", err.strip()[-300:])]
    ref = train(
        TrainConfig(
            model=load_checkpoint(work / "ddp2" / "checkpoints" / "last.pt")[0].config,
            out=str(work / "one"),
            steps=1,
            batch_size=4,
            segment=2048,
            val_clips=0,
            device="cuda",
            seed=3,
        ),
        progress=False,
    )
    ma, _ = load_checkpoint(work / "ddp2" / "checkpoints" / "last.pt")
    mb, _ = load_checkpoint(ref.last_checkpoint)
    diff = max((p - q).abs().max().item() for p, q in zip(ma.state_dict().values(), mb.state_dict().values()))
    loss = read_metrics(work / "ddp2" / "metrics.jsonl")[0]["loss"]
    detail = f"loss {loss:.6f} (2 ranks) vs {ref.history[0]['loss']:.6f} (1 process); tolerance 1e-5"
    return [
        row(
            "ddp",
            "2-GPU DDP step vs one process: max |weight difference|",
            "ok" if diff <= 1e-5 else "failed",
            diff,
            "",
            detail,
        )
    ]
