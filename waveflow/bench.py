"""``make bench``: speed and overhead targets, measured as ratios within one run.

The machines this project runs on are shared and noisy, so absolute timings mean little. Each
benchmark therefore interleaves what it compares and reports a ratio:

* **synthesis vs arithmetic peak** -- the fast synthesis throughput (FLOPs counted by
  :mod:`waveflow.flops` / wall time) divided by the machine's float32 matrix-multiply throughput
  measured in the same run (a large square ``torch.mm``, the best this backend does);
* **fast vs reference synthesis** -- the speed-up of the cached row-by-row inverse over the
  reference ``WaveFlow.infer`` on the same mel and latent;
* **metering overhead** -- how much a running :class:`~waveflow.energy.EnergyMeter` (with its
  power-sampling thread forced on) slows a WaveFlow training loop (target <= 1 %).

Results are printed and written to ``build/results/bench.csv``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from .audio import HOP_LENGTH, SAMPLE_RATE, log_mel
from .config import get_config
from .flops import count
from .model import WaveFlow
from .paths import RESULTS
from .synthesis import FastSynthesizer


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Median float32 ``torch.mm`` throughput in GFLOP/s (the practical arithmetic peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times) / 1e9


def _mel(seconds: float, batch: int) -> torch.Tensor:
    frames = round(seconds * SAMPLE_RATE / HOP_LENGTH) + 1
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(0)) - 5.0


def synthesis_seconds(synth: FastSynthesizer, mel: torch.Tensor) -> float:
    """Wall seconds of one fast synthesis call."""
    t = time.perf_counter()
    synth(mel, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - t


def run_benchmarks(configs: tuple[str, ...] = ("WF2", "WF4"), seconds: float = 1.0, batch: int = 1,
                   repeats: int = 3, overhead_repeats: int = 9) -> pd.DataFrame:
    """Run all benchmarks; one row per measured quantity."""
    rows = []
    peaks: list[float] = []
    for config in configs:
        cfg = get_config(config)
        synth = FastSynthesizer(WaveFlow(cfg).eval())
        mel = _mel(seconds, batch)
        audio_s = batch * HOP_LENGTH * (mel.shape[-1] - 1) / SAMPLE_RATE
        flops = count(cfg, "synthesis", config).flops_per_audio_second * audio_s
        synthesis_seconds(synth, mel[..., :4])  # warm-up
        local_peaks, synths = [], []
        for _ in range(repeats):  # interleaved, so load changes hit both
            local_peaks.append(matmul_gflops())
            synths.append(flops / synthesis_seconds(synth, mel) / 1e9)
        peak, achieved = statistics.median(local_peaks), statistics.median(synths)
        peaks += local_peaks
        rows += [
            {"benchmark": f"fast synthesis {config}", "value": achieved, "unit": "GFLOP/s",
             "detail": f"{audio_s:.2f} s of audio, batch {batch}, median of {repeats}"},
            {"benchmark": f"synthesis / peak {config}", "value": achieved / peak, "unit": "ratio",
             "detail": f"same run, interleaved with the matmul peak ({peak:.0f} GFLOP/s)"},
            {"benchmark": f"real-time factor {config}", "value": flops / (achieved * 1e9) / audio_s,
             "unit": "s per audio s", "detail": "this machine"},
        ]
    rows.insert(0, {"benchmark": "matmul peak", "value": statistics.median(peaks), "unit": "GFLOP/s",
                    "detail": "float32 2048x2048 torch.mm, median"})
    config = configs[0]
    model = WaveFlow(get_config(config)).eval()
    with torch.no_grad():  # random output convs, so the flows really transform (at init they are the identity)
        for flow in model.flows:
            flow.out.weight.normal_(0, 0.01)
            flow.out.bias.normal_(0, 0.01)
    synth = FastSynthesizer(model)

    # fast vs reference on a short clip (the reference costs O(h^2) row passes per flow)
    short = _mel(0.1, 1)
    z = torch.randn(1, HOP_LENGTH * (short.shape[-1] - 1), generator=torch.Generator().manual_seed(1))
    t = time.perf_counter()
    reference = model.infer(short, z=z)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    fast = synth(short, z=z)
    t_fast = time.perf_counter() - t
    max_diff = (fast - reference).abs().max().item()

    # metering overhead on a real WaveFlow training loop
    from .energy import measure_overhead

    small = WaveFlow(get_config("WF1"))
    opt = torch.optim.Adam(small.parameters(), lr=2e-4)
    x = 0.1 * torch.randn(1, 2048, generator=torch.Generator().manual_seed(2))
    m = log_mel(x)

    def train_step() -> None:
        opt.zero_grad()
        (-small.log_likelihood(x, m)).backward()
        opt.step()

    ov = measure_overhead(repeats=overhead_repeats, work_s=2.0, step=train_step)
    rows += [
        {"benchmark": "fast vs reference speed-up", "value": t_ref / t_fast, "unit": "ratio",
         "detail": f"{config}, 0.1 s of audio, max |diff| {max_diff:.1e}"},
        {"benchmark": "metering overhead (median)", "value": ov.relative, "unit": "fraction",
         "detail": f"WF1 training steps, {ov.repeats} interleaved pairs, sampling thread on; target <= 0.01"},
        {"benchmark": "metering overhead (fastest)", "value": ov.relative_min, "unit": "fraction",
         "detail": "fastest repetition of each kind (less sensitive to other load)"},
        {"benchmark": "sampling thread CPU share", "value": ov.sampler_cpu_share, "unit": "fraction",
         "detail": "CPU seconds of the meter's thread per wall second"},
        {"benchmark": "meter start+stop", "value": ov.fixed_s, "unit": "s", "detail": "one-off per measured block"},
    ]
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench``."""
    parser.add_argument("--config", nargs="+", default=["WF2", "WF4"],
                        help="configurations for the synthesis benchmarks (WF2 WF4)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of audio per synthesis call (1.0)")
    parser.add_argument("--batch", type=int, default=1, help="synthesis batch size (1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument("--overhead-repeats", type=int, default=9, help="pairs of metered/plain repetitions (9)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print them and write ``build/results/bench.csv``."""
    if args.seconds <= 0 or args.batch < 1 or args.repeats < 1 or args.overhead_repeats < 1:
        raise ValueError("bench: --seconds must be > 0 and --batch/--repeats/--overhead-repeats >= 1")
    table = run_benchmarks(tuple(args.config), args.seconds, args.batch, args.repeats, args.overhead_repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / "bench.csv", index=False)
    for row in table.itertuples():
        print(f"{row.benchmark:<30}{row.value:>12.4g} {row.unit:<15}{row.detail}")
    print(f"written to {RESULTS / 'bench.csv'}")
    return 0
