"""The parts of the GPU check that measure energy: the GPU the numbers come from, NVML's counter
against its own power readings, E_gen of WF2 and WF4 (eager and replayed from CUDA graphs, with the
GPU's busy share) and E_train of WF2, each beside the paper's value where it has one.

Each part takes the :class:`~waveflow.perf.gpu_check.rows.Settings` and returns (or yields, so a
part stopped at its time limit keeps the numbers it had) its result rows.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ...paths import LJSPEECH_MINI
from ...train.distributed import cuda_uuid
from .rows import Settings, model_config, paper_value, row, torch_device

NVML_TOLERANCE = 0.05  # the energy counter and the integrated power agree within 5 %


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
        x = torch.randn(8192, 8192, device=torch_device(s))
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


def _e_gen(s: Settings, config: str) -> Iterator[dict[str, Any]]:
    """E_gen of the 10 x 10 s at each batch of the sweep (batch 1 first, as the paper), then the
    energy-optimal batch: the lowest energy per audio second measured here."""
    from ...experiments.inference import energy_mels, longest_clips, measure_inference
    from ...model import WaveFlow

    n, seconds, sizes = (2, 0.1, [1, 2]) if s.quick else (10, 10.0, [1, 10, 5, 2])
    mels = energy_mels(longest_clips(LJSPEECH_MINI, n), n, seconds)
    torch.manual_seed(0)
    model = WaveFlow(model_config(s, config)).to(torch_device(s)).eval()
    paper = paper_value(config, "e_gen_wh")
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
            yield from _tdp_check_rows(f"e_gen_{config}", f"E_gen {config} batch 1", r)
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
    from ...experiments.inference import measure_inference

    name = f"E_gen {config} batch 1, CUDA graphs"
    if torch_device(s).type != "cuda":
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


def _tdp_check_rows(part: str, what: str, r: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's check of its Table 1 method, on our window: measured energy / (TDP x time) of the
    measured components (the GPU's NVML counter against its TDP x wall seconds); none for an estimate."""
    ratio = r.get("tdp_ratio", float("nan"))
    if not isinstance(ratio, float) or math.isnan(ratio):
        return [row(part, f"{what}: measured / TDP x time", "skipped", detail="no measured component (estimate only)")]
    detail = f"TDP x time {r['tdp_time_j']:.4g} J over the window; the paper's SING check gave 64.8 / 52 = 1.25"
    return [row(part, f"{what}: measured / TDP x time", "ok", ratio, "ratio", detail)]


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
        model_config(s, "WF2"),
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
        *_tdp_check_rows("e_train", "E_train WF2 steps", r),
        row("e_train", "E_train WF2 per step", "ok", float(r["j_per_step"]), "J", r["energy_method"]),
        row(
            "e_train",
            f"E_train WF2 extrapolated to {r['schedule_steps']:,} steps",
            "ok",
            float(r["e_train_kwh_extrapolated"]),
            "kWh",
            detail,
            paper=paper_value("WF2", "e_train_kwh"),
        ),
    ]
