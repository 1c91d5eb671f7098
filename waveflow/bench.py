"""``make bench``: speed and overhead targets, measured as ratios within one run.

The machines this project runs on are shared and noisy, so absolute timings mean little. Each
benchmark therefore interleaves what it compares and reports a ratio:

* **synthesis vs arithmetic peak** -- the fast synthesis throughput (FLOPs counted by
  :mod:`waveflow.flops` / wall time) divided by the machine's float32 matrix-multiply throughput
  measured in the same run (a large square ``torch.mm``, the best this backend does);
* **fast vs reference synthesis** -- the speed-up of the cached row-by-row inverse over the
  reference ``WaveFlow.infer`` on the same mel and latent;
* **metering overhead** -- how much a running :class:`~waveflow.energy.EnergyMeter` (with its
  power-sampling thread forced on by a simulated GPU, :class:`_ConstantPowerNvml`) slows a
  WaveFlow training loop (target <= 1 %).

Results are printed and written to ``build/results/bench.csv``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from .analysis import save_table
from .audio import HOP_LENGTH, N_MELS, SAMPLE_RATE, log_mel, samples_for
from .energy import EnergyMeter
from .energy.readers import DEFAULT_POLL_HZ
from .flops import count
from .model import FastSynthesizer, WaveFlow, get_config

#: A typical log-mel level (natural log of magnitudes; silence sits at log(1e-5) = -11.5), so that the
#: random benchmark mels exercise the conditioning like speech does.
TYPICAL_LOG_MEL = -5.0


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
    frames = samples_for(seconds) // HOP_LENGTH + 1
    return torch.randn(batch, N_MELS, frames, generator=torch.Generator().manual_seed(0)) + TYPICAL_LOG_MEL


def synthesis_seconds(synth: FastSynthesizer, mel: torch.Tensor) -> float:
    """Wall seconds of one fast synthesis call."""
    t = time.perf_counter()
    synth(mel, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - t


def synthesis_vs_peak(configs: tuple[str, ...], seconds: float, batch: int, repeats: int) -> list[dict]:
    """Fast-synthesis throughput of each configuration as a fraction of the matmul peak, interleaved."""
    rows: list[dict] = []
    peaks: list[float] = []
    for config in configs:
        cfg = get_config(config)
        synth = FastSynthesizer(WaveFlow(cfg).eval())
        mel = _mel(seconds, batch)
        audio_s = batch * HOP_LENGTH * (mel.shape[-1] - 1) / SAMPLE_RATE
        flops = count(cfg, "synthesis", config).flops_per_audio_second * audio_s
        synthesis_seconds(synth, mel[..., :4])  # first call: allocator and kernel selection
        local_peaks, synths = [], []
        for _ in range(repeats):  # interleaved, so load changes hit both
            local_peaks.append(matmul_gflops())
            synths.append(flops / synthesis_seconds(synth, mel) / 1e9)
        peak, achieved = statistics.median(local_peaks), statistics.median(synths)
        peaks += local_peaks
        rows += [
            {
                "benchmark": f"fast synthesis {config}",
                "value": achieved,
                "unit": "GFLOP/s",
                "detail": f"{audio_s:.2f} s of audio, batch {batch}, median of {repeats}",
            },
            {
                "benchmark": f"synthesis / peak {config}",
                "value": achieved / peak,
                "unit": "ratio",
                "detail": f"same run, interleaved with the matmul peak ({peak:.0f} GFLOP/s)",
            },
            {
                "benchmark": f"real-time factor {config}",
                "value": flops / (achieved * 1e9) / audio_s,
                "unit": "s per audio s",
                "detail": "this machine",
            },
        ]
    rows.insert(
        0,
        {
            "benchmark": "matmul peak",
            "value": statistics.median(peaks),
            "unit": "GFLOP/s",
            "detail": "float32 2048x2048 torch.mm, median",
        },
    )
    return rows


def fast_vs_reference(config: str) -> list[dict]:
    """Speed-up of the cached fast inverse over the reference ``WaveFlow.infer`` on 0.1 s of audio
    (the reference costs O(h^2) row passes per flow), with their largest difference."""
    model = WaveFlow(get_config(config)).eval()
    with torch.no_grad():  # random output convs, so the flows really transform (at init they are the identity)
        for flow in model.flows:
            flow.out.weight.normal_(0, 0.01)
            flow.out.bias.normal_(0, 0.01)
    synth = FastSynthesizer(model)
    short = _mel(0.1, 1)
    z = torch.randn(1, HOP_LENGTH * (short.shape[-1] - 1), generator=torch.Generator().manual_seed(1))
    t = time.perf_counter()
    reference = model.infer(short, z=z)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    fast = synth(short, z=z)
    t_fast = time.perf_counter() - t
    max_diff = (fast - reference).abs().max().item()
    return [
        {
            "benchmark": "fast vs reference speed-up",
            "value": t_ref / t_fast,
            "unit": "ratio",
            "detail": f"{config}, 0.1 s of audio, max |diff| {max_diff:.1e}",
        }
    ]


def metering_overhead(repeats: int) -> list[dict]:
    """How much a running meter slows real WaveFlow (WF1) training steps."""
    small = WaveFlow(get_config("WF1"))
    opt = torch.optim.Adam(small.parameters(), lr=2e-4)
    x = 0.1 * torch.randn(1, 2048, generator=torch.Generator().manual_seed(2))
    m = log_mel(x)

    def train_step() -> None:
        opt.zero_grad()
        (-small.log_likelihood(x, m)).backward()
        opt.step()

    ov = measure_overhead(repeats=repeats, work_s=2.0, step=train_step)
    return [
        {
            "benchmark": "metering overhead (median)",
            "value": ov.relative,
            "unit": "fraction",
            "detail": f"WF1 training steps, {ov.repeats} interleaved pairs, sampling thread on; target <= 0.01",
        },
        {
            "benchmark": "metering overhead (fastest)",
            "value": ov.relative_min,
            "unit": "fraction",
            "detail": "fastest repetition of each kind (less sensitive to other load)",
        },
        {
            "benchmark": "sampling thread CPU share",
            "value": ov.sampler_cpu_share,
            "unit": "fraction",
            "detail": "CPU seconds of the meter's thread per wall second",
        },
        {"benchmark": "meter start+stop", "value": ov.fixed_s, "unit": "s", "detail": "one-off per measured block"},
    ]


def run_benchmarks(
    configs: tuple[str, ...] = ("WF2", "WF4"),
    seconds: float = 1.0,
    batch: int = 1,
    repeats: int = 3,
    overhead_repeats: int = 9,
) -> pd.DataFrame:
    """Run all benchmarks; one row per measured quantity."""
    rows = synthesis_vs_peak(configs, seconds, batch, repeats)
    rows += fast_vs_reference(configs[0])
    rows += metering_overhead(overhead_repeats)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------
# metering overhead
@dataclass(frozen=True)
class Overhead:
    """Medians of interleaved repetitions of the same work without and with a running meter.

    ``relative`` is the perturbation of the work while the meter runs (the target is <= 1 %),
    ``relative_min`` the same from the fastest repetitions (less sensitive to other load on a
    shared machine), ``sampler_cpu_share`` the CPU time of the sampling thread per wall second
    (an upper bound of what it can take from the work), ``fixed_s`` the one-off cost of
    ``start()`` + ``stop()`` per measured block, outside the work.
    """

    plain_s: float
    metered_s: float
    plain_min_s: float
    metered_min_s: float
    fixed_s: float
    sampler_cpu_share: float
    repeats: int
    polling: bool  # whether the meter ran its sampling thread

    @property
    def relative(self) -> float:
        return self.metered_s / self.plain_s - 1.0

    @property
    def relative_min(self) -> float:
        return self.metered_min_s / self.plain_min_s - 1.0


class _ConstantPowerNvml:
    """A one-GPU NVML stand-in without the energy counter, so the 10 Hz power thread really runs."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> str:
        return "simulated GPU (benchmark)"

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 250_000  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        raise self.NVMLError_NotSupported("no counter")


def measure_overhead(
    repeats: int = 7,
    work_s: float = 0.3,
    poll_hz: float = DEFAULT_POLL_HZ,
    simulate_polling: bool = True,
    seed: int = 0,
    step: Callable[[], None] | None = None,
) -> Overhead:
    """Relative slowdown of a training-like loop while an :class:`EnergyMeter` runs (target <= 1 %).

    Each repetition is ~``work_s`` of forward/backward/SGD steps of a small conv net; repetitions
    with and without the meter alternate (and alternate which goes first) so drift hits both,
    and the medians are compared. The work is timed between ``start()`` and ``stop()``, whose
    own cost is reported apart as ``fixed_s``.

    Args:
        repeats: pairs of repetitions (default 7).
        work_s: target seconds of work per repetition (default 0.3).
        poll_hz: sampling rate of the meter's thread (default 10).
        simulate_polling: when no GPU needs power polling here, use a stand-in GPU so the
            sampling thread runs anyway (the worst case: default True).
        seed: torch seed.
        step: one unit of the work to measure (e.g. a WaveFlow training step, as ``make bench``
            passes); default: a step of a small conv net.
    """
    torch.manual_seed(seed)
    if step is None:
        net = nn.Sequential(
            nn.Conv1d(1, 32, 9, padding=4),
            nn.ReLU(),
            nn.Conv1d(32, 32, 9, padding=4),
            nn.ReLU(),
            nn.Conv1d(32, 1, 9, padding=4),
        )
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        x = torch.randn(8, 1, 4096)

        def step() -> None:
            opt.zero_grad()
            loss = (net(x) - x).pow(2).mean()
            loss.backward()
            opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    step()
    n_steps = max(1, round(work_s / max(time.perf_counter() - t, 1e-6)))

    def work() -> None:
        for _ in range(n_steps):
            step()

    def metered() -> tuple[float, float, float]:
        meter = EnergyMeter(
            "overhead",
            pue=1.0,
            cpu_tdp_w=100.0,
            poll_hz=poll_hz,
            nvml=_ConstantPowerNvml() if simulate_polling else None,
        )
        t0 = time.perf_counter()
        meter.start()
        t1 = time.perf_counter()
        work()
        t2 = time.perf_counter()
        meter.stop()
        return t2 - t1, (t1 - t0) + (time.perf_counter() - t2), meter.poll_cpu_s / (t2 - t1)

    def plain() -> float:
        t0 = time.perf_counter()
        work()
        return time.perf_counter() - t0

    EnergyMeter("warm-up", pue=1.0, cpu_tdp_w=100.0).stop()  # import pynvml, read the TDP table once
    plain_times, metered_times = [], []
    for i in range(repeats):
        if i % 2:
            metered_times.append(metered())
            plain_times.append(plain())
        else:
            plain_times.append(plain())
            metered_times.append(metered())
    work_times = [m[0] for m in metered_times]
    return Overhead(
        statistics.median(plain_times),
        statistics.median(work_times),
        min(plain_times),
        min(work_times),
        statistics.median(m[1] for m in metered_times),
        statistics.median(m[2] for m in metered_times),
        repeats,
        simulate_polling,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench``."""
    parser.add_argument(
        "--config", nargs="+", default=["WF2", "WF4"], help="configurations for the synthesis benchmarks (WF2 WF4)"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of audio per synthesis call (1.0)")
    parser.add_argument("--batch", type=int, default=1, help="synthesis batch size (1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument("--overhead-repeats", type=int, default=9, help="pairs of metered/plain repetitions (9)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print them and write ``build/results/bench.csv``."""
    if args.seconds <= 0 or args.batch < 1 or args.repeats < 1 or args.overhead_repeats < 1:
        raise ValueError("bench: --seconds must be > 0 and --batch/--repeats/--overhead-repeats >= 1")
    table = run_benchmarks(tuple(args.config), args.seconds, args.batch, args.repeats, args.overhead_repeats)
    path = save_table(table, "bench")
    for row in table.itertuples():
        print(f"{row.benchmark:<30}{row.value:>12.4g} {row.unit:<15}{row.detail}")
    print(f"written to {path}")
    return 0
