"""The GPU check: one command that runs every CUDA path of the project and writes down the numbers.

``make gpu-check`` (``python -m waveflow gpu-check``) runs, on the first visible GPU:

* ``tests``: the ``requires_gpu`` tests (``pytest -m requires_gpu``);
* ``nvml``: the NVML meter against itself: the energy counter and the 10 Hz power integration over
  the same ~20 s synthetic load, which should agree within 5 %;
* ``e_gen_WF2``, ``e_gen_WF4``: E_gen as in the paper (10 x 10 s), at batch 1 and at the
  energy-optimal batch of a sweep, then at batch 1 with the synthesis replayed from CUDA graphs,
  with its real-time factor and its speed-up over the eager fast path, and the share of one
  synthesis the GPU spends in kernels, eager and replayed (launch-bound when well below 1);
* ``e_train``: E_train of WF2 over 100 steps at the paper's batch (8 x 16,000 samples),
  extrapolated to its schedule;
* ``resume``: CUDA resume exactness (3 + 3 steps against 6, deterministic kernels);
* ``ddp``: a DDP run through torchrun and NCCL: a 2-GPU step against one process when two GPUs
  are visible, else a 1-GPU NCCL job that must meter its GPU.

Each part runs in its own process with a time limit, so a part that hangs or crashes the CUDA
context becomes a row with its status (``ok``, ``failed``, ``timeout``, ``skipped``) and the
others still run; ``build/results/gpu_check.csv`` is rewritten atomically after every part, and a
short summary goes to ``build/results/gpu_check_summary.txt``. On a machine without CUDA it says so
in one line and exits 0. ``--quick`` shrinks every part (tiny audio, a few steps), and with
``--device cpu`` runs the same logic on the CPU, which is how the tests check it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...files import atomic_write
from ...paths import BUILD, DATA, LJSPEECH_MINI, RESULTS, ROOT
from ...train.distributed import cuda_uuid

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
    "e_gen_WF4": 150.0,
}
PARTS = tuple(PART_BUDGET_S)
NVML_TOLERANCE = 0.05  # the energy counter and the integrated power agree within 5 %
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


def _paper(config: str, column: str) -> float:
    with open(PAPER_TABLE, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec["model"] == config:
                return float(rec[column])
    return math.nan


def _dev(s: Settings) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if s.device == "cuda" else torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# parts
def part_device(s: Settings) -> list[dict[str, Any]]:
    """What the check ran on: GPU, memory, driver, torch and CUDA versions."""
    if s.device != "cuda":
        return [row("device", "cpu", "ok", detail=f"torch {torch.__version__}; quick logic check on the CPU")]
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    driver = ""
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = f"driver {pynvml.nvmlSystemGetDriverVersion()}"
        pynvml.nvmlShutdown()
    except Exception as exc:
        driver = f"driver unknown ({type(exc).__name__})"
    detail = (
        f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs; {driver}; "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}; {torch.cuda.device_count()} GPU(s) visible"
    )
    return [row("device", p.name, "ok", detail=detail)]


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
    return [line.strip() for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))][:10]


def part_nvml(s: Settings) -> list[dict[str, Any]]:
    """NVML's energy counter against its own power readings integrated at 10 Hz over one synthetic load."""
    if s.device != "cuda":
        return [row("nvml", "counter vs 10 Hz power", "skipped", detail="no CUDA device: NVML needs a GPU")]
    import pynvml

    from ...energy import readers as er

    duration, tail = (3.0, 0.5) if s.quick else (20.0, 1.5)
    index = torch.cuda.current_device()
    pynvml.nvmlInit()
    try:
        uuid = cuda_uuid(index)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid else pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        x = torch.randn(8192, 8192, device=_dev(s))
        torch.cuda.synchronize()
        counter = er.NvmlEnergyCounter(pynvml, handle, index, name)
        power = er.NvmlPowerIntegrator(pynvml, handle, index, name, 10.0)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                power.poll()

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration:
            for _ in range(8):
                x = torch.tanh(x @ x) * 0.5
            torch.cuda.synchronize()
        time.sleep(tail)  # both readers see the fall back to idle
        wall = time.perf_counter() - t0
        stop.set()
        thread.join()
        e_counter, e_power = counter.read(), power.read()
    finally:
        pynvml.nvmlShutdown()
    rel = (e_power - e_counter) / e_counter if e_counter > 0 else math.nan
    ok = abs(rel) <= NVML_TOLERANCE
    detail = (
        f"{name}: counter {e_counter:.1f} J, power x time {e_power:.1f} J ({power.samples} samples) over {wall:.1f} s; "
        f"mean {e_counter / wall:.0f} W; tolerance {NVML_TOLERANCE:.0%}"
    )
    return [
        row("nvml", "energy counter", "ok", e_counter, "J", "measured:nvml-energy"),
        row("nvml", "power integrated at 10 Hz", "ok", e_power, "J", "measured:nvml-power"),
        row("nvml", "difference power - counter", "ok" if ok else "failed", 100 * rel, "%", detail),
    ]


def _model_config(s: Settings, name: str) -> Any:
    """The paper's configuration, or in quick mode the same h with r=8, 2 flows of 2 layers."""
    from ...model import get_config

    config = get_config(name)
    return config.replace(res_channels=8, n_flows=2, n_layers=2) if s.quick else config


def _e_gen(s: Settings, config: str) -> Iterator[dict[str, Any]]:
    """E_gen of the 10 x 10 s at each batch of the sweep (batch 1 first, as the paper), then the
    energy-optimal batch: the lowest energy per audio second measured here."""
    from ...experiments.measure import energy_mels, longest_clips, measure_inference
    from ...model import WaveFlow

    n, seconds, sizes = (2, 0.1, [1, 2]) if s.quick else (10, 10.0, [1, 10, 5, 2])
    mels = energy_mels(longest_clips(LJSPEECH_MINI, n), n, seconds)
    torch.manual_seed(0)
    model = WaveFlow(_model_config(s, config)).to(_dev(s)).eval()
    paper = _paper(config, "e_gen_wh")
    shrunk = " (quick: r=8, 2 flows x 2 layers)" if s.quick else ""
    best: tuple[float, int] | None = None
    eager_rtf = math.nan
    for b in sizes:
        r = measure_inference(config, model, mels, batch_size=b, device=s.device, log=s.energy_log)
        detail = (
            f"{r['e_gen_label']}; {n} x {seconds:g} s; RTF {r['rtf']:.3g}; {r['j_per_audio_s']:.3g} J per audio s; "
            f"{r['hardware']}; untrained weights (the cost does not depend on them){shrunk}"
        )
        yield row(
            f"e_gen_{config}",
            f"E_gen {config} batch {b}",
            "ok",
            float(r["e_gen_wh"]),
            "Wh per 100 s",
            detail,
            paper=paper,
        )
        if best is None or r["e_gen_wh"] < best[0]:
            best = (float(r["e_gen_wh"]), b)
        if b == 1:
            eager_rtf = float(r["rtf"])
    assert best is not None
    detail = f"lowest of batches {sorted(sizes)} on this machine"
    yield row(
        f"e_gen_{config}", f"E_gen {config} energy-optimal batch {best[1]}", "ok", best[0], "Wh per 100 s", detail
    )
    yield from _e_gen_cuda_graphs(s, config, model, mels, eager_rtf, paper, shrunk)


def _e_gen_cuda_graphs(
    s: Settings, config: str, model: Any, mels: list[torch.Tensor], eager_rtf: float, paper: float, shrunk: str
) -> Iterator[dict[str, Any]]:
    """E_gen at batch 1 with the synthesis replayed from CUDA graphs, and its speed-up over the eager
    fast path on the same clips (graphs recorded in the unmetered warm-up)."""
    from ...experiments.measure import measure_inference

    name = f"E_gen {config} batch 1, CUDA graphs"
    if _dev(s).type != "cuda":
        yield row(f"e_gen_{config}", name, "skipped", detail="no CUDA device: CUDA graphs need a GPU")
        return
    r = measure_inference(config, model, mels, batch_size=1, device=s.device, log=s.energy_log, cuda_graphs=True)
    detail = (
        f"{r['e_gen_label']}; {len(mels)} clips; RTF {r['rtf']:.3g}; {r['j_per_audio_s']:.3g} J per audio s; "
        f"{r['hardware']}{shrunk}"
    )
    yield row(f"e_gen_{config}", name, "ok", float(r["e_gen_wh"]), "Wh per 100 s", detail, paper=paper)
    yield row(
        f"e_gen_{config}",
        f"CUDA graphs speed-up {config} batch 1",
        "ok",
        eager_rtf / r["rtf"],
        "x",
        f"real-time factor eager {eager_rtf:.3g} against graphs {r['rtf']:.3g}, same clips and batch",
    )
    yield from _gpu_busy(config, model, mels[0])


def _gpu_busy(config: str, model: Any, mel: torch.Tensor) -> Iterator[dict[str, Any]]:
    """How busy the GPU is during one batch-1 synthesis of ``mel``, eager and replayed from a CUDA
    graph: the kernels' time over the wall time (``waveflow.perf.breakdown.gpu_busy``)."""
    from ...audio import SAMPLE_RATE
    from ...model import FastSynthesizer
    from ..breakdown import gpu_busy

    mel = mel.to(next(model.parameters()).device)[None]
    seconds = (mel.shape[-1] - 1) * model.config.hop_length / SAMPLE_RATE
    for label, graphs in (("eager", False), ("CUDA graphs", True)):
        synth = FastSynthesizer(model, cuda_graphs=graphs)
        gen = torch.Generator(device=mel.device)
        kernels, wall = gpu_busy(lambda synth=synth, gen=gen: synth(mel, generator=gen.manual_seed(0)))
        name = f"GPU busy share {config} batch 1, {label}"
        if kernels <= 0:
            yield row(f"e_gen_{config}", name, "skipped", detail="the profiler saw no kernel time (no CUPTI?)")
            continue
        detail = (
            f"kernels {1e3 * kernels:.1f} ms of {1e3 * wall:.1f} ms wall (torch.profiler); one {seconds:.1f} s clip"
        )
        yield row(f"e_gen_{config}", name, "ok", kernels / wall, "fraction", detail)


def part_e_gen_wf2(s: Settings) -> Iterator[dict[str, Any]]:
    """E_gen of WF2 (10 x 10 s) at batch 1, 10, 5 and 2, and the energy-optimal batch among them."""
    return _e_gen(s, "WF2")


def part_e_gen_wf4(s: Settings) -> Iterator[dict[str, Any]]:
    """E_gen of WF4, as for WF2."""
    return _e_gen(s, "WF4")


def part_e_train(s: Settings) -> list[dict[str, Any]]:
    """E_train of WF2: 100 metered steps at batch 8 x 16,000, extrapolated to the paper's schedule."""
    from ...experiments.measure import measure_training, paper_steps
    from ...model import get_config

    out_dir = Path(s.work) / "e_train"
    shutil.rmtree(out_dir, ignore_errors=True)
    if s.quick:
        opts = dict(steps=2, batch_size=2, segment=2048, epochs=1, warmup_steps=1, carbontracker=False)
    else:
        opts = dict(steps=100, batch_size=8, segment=16_000, epochs=2, warmup_steps=5, carbontracker=True)
    # The paper's WF2 schedule, also for the shrunk model of the quick mode (r=8 has no schedule of its own).
    r = measure_training(
        "WF2",
        _model_config(s, "WF2"),
        out_dir,
        schedule_steps=paper_steps(get_config("WF2")),
        data=LJSPEECH_MINI,
        device=s.device,
        log=s.energy_log,
        **opts,
    )
    ct = ""
    if "ct_energy_kwh" in r:
        notes = " ".join(str(r.get("ct_notes", "")).split())[:240]
        ct = f"; carbontracker {r['ct_energy_kwh']:.3g} kWh ({r['ct_method']})" + (f" [{notes}]" if notes else "")
    detail = (
        f"{r['e_train_label']}; {r['steps']} steps x {r['batch_size']} x {r['segment']} samples "
        f"in {r['wall_s']:.1f} s; {r['j_per_step']:.3g} J per step; {r['hardware']}{ct}"
    )
    return [
        row("e_train", "E_train WF2 per step", "ok", float(r["j_per_step"]), "J", r["energy_method"]),
        row(
            "e_train",
            f"E_train WF2 extrapolated to {r['schedule_steps']:,} steps",
            "ok",
            float(r["e_train_kwh_extrapolated"]),
            "kWh",
            detail,
            paper=_paper("WF2", "e_train_kwh"),
        ),
    ]


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


PART_FUNCTIONS: dict[str, Callable[[Settings], Iterable[dict[str, Any]]]] = {
    "tests": part_tests,
    "nvml": part_nvml,
    "e_gen_WF2": part_e_gen_wf2,
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
