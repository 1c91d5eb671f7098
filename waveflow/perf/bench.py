"""``make bench``: speed and overhead targets, measured as ratios within one run.

The machines this project runs on are shared and noisy, so absolute timings mean little. Each
benchmark therefore interleaves what it compares and reports a ratio. Speeds are the *best* of
their repetitions, the peak included: a neighbour's load only ever slows a run down, so the best
of each is the closest to the quiet machine, and a ratio of medians moved by +-25 % between runs
on the 2-vCPU VM when load came and went at the scale of seconds:

* **synthesis vs arithmetic peak** -- the fast synthesis throughput (FLOPs counted by
  :mod:`waveflow.measures.flops` / wall time) divided by the machine's float32 matrix-multiply throughput
  measured in the same run (a large square ``torch.mm``, the best this backend does). That peak is
  the best of *all* the run's matmul samples, taken interleaved with each work, so every "/ peak"
  ratio has the same denominator as the run's ``matmul peak`` row: a sample that fell in a loaded
  moment can only lower a peak, and a ratio against a low local peak overstates (once 0.78 against
  the training's own samples, 0.60 against the run's);
* **training vs arithmetic peak** -- one WaveFlow training step (forward, backward, Adam) at batch
  2 x 16,000 samples, its counted forward + backward FLOPs over its wall time, against the same peak,
  and against the matmul throughput sustained over a window as long as the step (a ~12-s step sees
  the machine's average conditions, the best 0.1-s product its best moment);
* **CPU kernel choices** -- the model's own CPU paths for 1x1 and dilated convolutions against
  oneDNN's, forward + backward on the training shapes (:mod:`waveflow.perf.cpu_kernels`): whether each
  choice, made on AMD, still wins on this CPU;
* **bf16 vs fp32 synthesis** -- where the hardware runs bfloat16 natively (else the row says why);
* **fast vs reference synthesis** -- the speed-up of the cached row-by-row inverse over the
  reference ``WaveFlow.infer`` on the same mel and latent;
* **metering overhead** -- how much a running :class:`~waveflow.energy.EnergyMeter` (with its
  power-sampling thread forced on by a simulated GPU) slows a WaveFlow training loop (target
  <= 1 %), decided from amplified-sampler pairs (:mod:`waveflow.perf.overhead`).

**The training step on the CPU, measured** (the step of :func:`training_vs_peak`). Where a WF2
step's time goes on the CPU (``make bench-breakdown``, 2-vCPU AMD EPYC, torch 2.13, matmul peak
~180 GFLOP/s): matrix products and convolutions 82 % of the profiled step (at 130 GFLOP/s
together), element-wise work (gates, adds, their backward) 8 %, copies and fills 6 %, other ops
1.5 %, outside ops 2 %, Adam < 1 %. Per convolution kernel: oneDNN's forward 3x3
kernels (the layers' forward and the input gradients) run at 139-173 GFLOP/s, the undilated
first layer's backward at 150, and the dilated layers' weight gradients at 67-106 in oneDNN's
backward-weights kernel: 2.5-3.7 s of a 10-11-s profiled step, the largest single loss. That
weight gradient is now GEMMs (below); with it, the copies it makes (three width-shifted copies
of each dilated layer's input, ~5 ms each when they come from DRAM) are ~6 % of the step.

Adopted: oneDNN's backward-data kernel for *dilated* convolutions ran at ~40 % of peak against
80-100 % for its forward kernel, so the model takes that gradient from the forward kernel
(:class:`waveflow.model.modules.CausalConv2d`), worth ~10 % of the step measured in-process. The
1x1 convolutions (K = 64 and 80 channels) ran at a third to a half of peak in oneDNN; they are
now one ``baddbmm`` each (:class:`waveflow.model.modules.PointwiseConv2d`), about 2x faster on
these shapes and worth +5-10 % of the step. The dilated weight gradient as one batched GEMM per
kernel row over width-shifted copies of the input (:func:`waveflow.model.modules.weight_grad_by_taps`,
N = 3 x 64 instead of 64 per tap): ~135 GFLOP/s including the copy against oneDNN's 67-90 when
timed alone, 1.00-1.22x a layer's forward + backward (``make bench``'s row, which includes the
unchanged forward and input gradient), and 1.045-1.086x a whole WF2 training step (medians of
three runs of 8-12 interleaved pairs; 1.034x on WF4).

Measured and not adopted: channels-last (NHWC) tensors (oneDNN's NHWC forward kernel is faster,
140 against 93 GFLOP/s at dilation (2, 16), but its weight-gradient kernel slower, 60 against
77, 29 against 89 undilated; with the layout conversions a dilated layer's forward + both
gradients came out at 0.77-1.10x the NCHW path). A whole residual layer as one
``autograd.Function`` (conditioning accumulated in place, the gate written into one gradient
buffer, residual and skip carried in one packed tensor: no ``cat``, no separate adds): it saves
~4 % of element-wise time but came out at 0.97-1.04x a coupling network's forward + backward,
since any conv that pads implicitly (``padding=(0, p_w)``) is 1.4-1.5x slower in oneDNN for the
128 -> 64 input-gradient convolutions at wide dilations. The dilated weight gradient as nine
long-K GEMMs (N = 64) over the flattened padded rows, no copy: ~1.45x oneDNN timed alone, but
0.91-1.02x a coupling network's forward + backward over 24 pairs; with the cache flushed between
calls (as in a step) it ran 74-113 GFLOP/s against the tap copies' 99-112, blocked over K or not.
The width dilation split into undilated phases: no gain. What is left is kernel efficiency: the
weight-gradient GEMMs at ~0.6-0.75 of peak, and the K = 64/80 GEMMs of the 1x1 products at
~0.6-0.7.

Results are printed and written to ``build/results/bench.csv``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch

from ..analysis import save_table
from ..audio import HOP_LENGTH, log_mel
from ..devices import bf16_support
from ..measures.flops import count
from ..model import FastSynthesizer, WaveFlow, get_config
from .breakdown import by_op, write_breakdowns
from .cpu_kernels import kernel_choice_rows
from .overhead import OVERHEAD_TARGET, measure_overhead
from .workloads import SynthesisWorkload, benchmark_mel, synthesis_workload, training_workload


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``torch.mm`` throughput of ``repeats`` in GFLOP/s (the practical arithmetic peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / min(times) / 1e9


def sustained_matmul_gflops(seconds: float, size: int = 2048) -> float:
    """Float32 ``torch.mm`` throughput averaged over back-to-back calls for at least ``seconds``.

    The reference for work that lasts seconds. On the shared 2-vCPU VM the fastest single 0.1-s
    product of a 10-s window ran 1.22-1.25x that window's average (three windows, 118-129
    against 147-157 GFLOP/s), so the best single call, the burst peak, is an upper outlier that a
    training step of ~12 s cannot match even at full efficiency; a window as long as the work
    averages over the conditions the work itself sees."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    return 2 * size**3 * calls / (time.perf_counter() - start) / 1e9


def synthesis_seconds(work: SynthesisWorkload, mel: torch.Tensor | None = None) -> float:
    """Wall seconds of one fast synthesis of the workload (or of ``mel``)."""
    t = time.perf_counter()
    work.run(mel)
    return time.perf_counter() - t


@dataclass(frozen=True)
class PeakRatio:
    """A "/ peak" row whose denominator is not known yet: the run's matmul peak is the best sample
    of the whole run, so these rows are written (:meth:`row`) once every sample is in."""

    benchmark: str
    achieved: float  # GFLOP/s of the work
    interleaved_peak: float  # the best matmul sample taken between this work's repetitions

    def row(self, run_peak: float) -> dict:
        """The ratio against ``run_peak`` (never below this work's own interleaved samples)."""
        peak = max(run_peak, self.interleaved_peak)
        return {
            "benchmark": self.benchmark,
            "value": self.achieved / peak,
            "unit": "ratio",
            "detail": f"against the run's matmul peak ({peak:.0f} GFLOP/s, best of all its samples; "
            f"the best interleaved with this work: {self.interleaved_peak:.0f})",
        }


def synthesis_vs_peak(
    configs: tuple[str, ...], seconds: float, batch: int, repeats: int, peaks: list[float]
) -> list[dict | PeakRatio]:
    """Fast-synthesis throughput of each configuration, with the matmul peak sampled between its
    repetitions; the samples are appended to ``peaks`` and the ratio rows wait for the run's best."""
    rows: list[dict | PeakRatio] = []
    for config in configs:
        cfg = get_config(config)
        work = synthesis_workload(cfg, seconds, batch)
        audio_s = work.audio_s
        flops = count(cfg, "synthesis", config).flops_per_audio_second * audio_s
        synthesis_seconds(work, work.mel[..., :4])  # first call: allocator and kernel selection
        local_peaks, synths = [], []
        for _ in range(repeats):  # interleaved, so load changes hit both
            local_peaks.append(matmul_gflops())
            synths.append(flops / synthesis_seconds(work) / 1e9)
        achieved = max(synths)
        peaks += local_peaks
        rows += [
            {
                "benchmark": f"fast synthesis {config}",
                "value": achieved,
                "unit": "GFLOP/s",
                "detail": f"{audio_s:.2f} s of audio, batch {batch}, best of {repeats}",
            },
            PeakRatio(f"synthesis / peak {config}", achieved, max(local_peaks)),
            {
                "benchmark": f"real-time factor {config}",
                "value": flops / (achieved * 1e9) / audio_s,
                "unit": "s per audio s",
                "detail": "this machine",
            },
        ]
    return rows


SUSTAINED_WINDOW_S = 5.0  # long enough to average out sub-second bursts, short enough for the 4-min budget
TRAIN_BATCH, TRAIN_SEGMENT = 2, 16_000  # the training benchmark: batch 2 x 16,000 samples


def training_vs_peak(
    config: str,
    repeats: int,
    batch: int = TRAIN_BATCH,
    segment: int = TRAIN_SEGMENT,
    peaks: list[float] | None = None,
) -> list[dict | PeakRatio]:
    """Achieved FLOP/s of full training steps (forward, backward, Adam) as a fraction of the matmul
    peak, interleaved; FLOPs are FlopCounterMode's forward + backward count for this much audio. The
    peak samples and the sustained windows (both back-to-back ``torch.mm``) go into ``peaks``.

    Where the step's time goes on the CPU, and the kernel choices measured on it, are in the module
    docstring.

    Besides the run's peak (the best sample of the run, :class:`PeakRatio`), the step is compared
    with the matmul throughput sustained over a window as long as the step
    (:func:`sustained_matmul_gflops`): the best single product runs ~1.2x the 10-s average on the
    shared VM, so the two ratios bracket how close a step lasting seconds is to the machine's limit.
    """
    cfg = get_config(config)
    work = training_workload(cfg, batch, segment)
    flops = count(cfg, "training", config).flops_per_audio_second * work.audio_s
    # Warm-up on an eighth of the segment: Adam's state and the first-call costs, in seconds rather
    # than a full step (the best of the timed steps leaves out what is left of the first one).
    short = work.audio[:, : max(4 * cfg.hop_length, segment // 8 // cfg.hop_length * cfg.hop_length)]
    work.step(short, log_mel(short))
    local_peaks, windows, achieved = [], [], []
    for _ in range(repeats):
        local_peaks.append(matmul_gflops())
        t = time.perf_counter()
        work.step()
        seconds = time.perf_counter() - t
        achieved.append(flops / seconds / 1e9)
        windows.append(sustained_matmul_gflops(min(seconds, SUSTAINED_WINDOW_S)))
    sustained, value = max(windows), max(achieved)
    if peaks is not None:  # the run's "matmul peak" row is the best of every sample
        peaks += local_peaks + windows
    return [
        {
            "benchmark": f"training step {config}",
            "value": value,
            "unit": "GFLOP/s",
            "detail": f"forward+backward+Adam, batch {batch} x {segment} samples, {flops / 1e9:.0f} GFLOP counted, "
            f"best of {repeats}",
        },
        PeakRatio(f"training / peak {config}", value, max(local_peaks + windows)),
        {
            "benchmark": f"training / sustained peak {config}",
            "value": value / sustained,
            "unit": "ratio",
            "detail": f"same steps against back-to-back torch.mm over min(step, {SUSTAINED_WINDOW_S:g} s) after each "
            f"(best window {sustained:.0f} GFLOP/s): like for like for a step that lasts seconds",
        },
    ]


def bf16_speedup(config: str, seconds: float, repeats: int) -> list[dict]:
    """bf16 over fp32 fast synthesis of the same mel, interleaved, with the bf16 error; a row with
    NaN and the reason where the hardware has no native bf16 (emulation would measure the emulator)."""
    name = f"synthesis bf16 / fp32 speed-up {config}"
    ok, why = bf16_support(torch.device("cpu"))
    if not ok:
        return [{"benchmark": name, "value": math.nan, "unit": "ratio", "detail": f"not measured: {why}"}]
    model = WaveFlow(get_config(config)).eval()
    synths = {p: FastSynthesizer(model, precision=p) for p in ("fp32", "bf16")}
    mel = benchmark_mel(seconds, 1)
    z = torch.randn(1, HOP_LENGTH * (mel.shape[-1] - 1), generator=torch.Generator().manual_seed(1))
    out = {p: synth(mel, z=z) for p, synth in synths.items()}  # also the warm-up
    times: dict[str, list[float]] = {p: [] for p in synths}
    for _ in range(repeats):
        for p, synth in synths.items():
            t = time.perf_counter()
            synth(mel, z=z)
            times[p].append(time.perf_counter() - t)
    err = (log_mel(out["bf16"]) - log_mel(out["fp32"])).abs().mean().item()
    return [
        {
            "benchmark": name,
            "value": min(times["fp32"]) / min(times["bf16"]),
            "unit": "ratio",
            "detail": f"{why}; {seconds:g} s of audio, best of {repeats}; log-mel L1 vs fp32 {err:.3g}",
        }
    ]


def fast_vs_reference(config: str) -> list[dict]:
    """Speed-up of the cached fast inverse over the reference ``WaveFlow.infer`` on 0.1 s of audio
    (the reference costs O(h^2) row passes per flow), with their largest difference."""
    model = WaveFlow(get_config(config)).eval()
    with torch.no_grad():  # random output convs, so the flows really transform (at init they are the identity)
        for flow in model.flows:
            flow.out.weight.normal_(0, 0.01)
            flow.out.bias.normal_(0, 0.01)
    synth = FastSynthesizer(model)
    short = benchmark_mel(0.1, 1)
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


def metering_overhead(repeats: int, work_s: float = 1.0) -> list[dict]:
    """How much a running meter slows real WaveFlow (WF1) training steps, with a verdict on the target."""
    work = training_workload(get_config("WF1"), batch=1, segment=2048, seed=2)
    ov = measure_overhead(repeats=repeats, work_s=work_s, step=work.step)
    low, high = ov.relative_ci
    return [
        {
            "benchmark": "metering overhead (wall)",
            "value": ov.relative,
            "unit": "fraction",
            "detail": f"cost per poll x {ov.poll_hz:g} Hz, from {ov.repeats} interleaved pairs of ~{work_s:g} s WF1 "
            f"training with the sampler at {ov.amplified_polls_per_s:.0f} polls/s; 95 % CI [{low:+.5f}, {high:+.5f}]; "
            f"target <= {OVERHEAD_TARGET}: {ov.verdict}",
        },
        {
            "benchmark": "metering cost per poll",
            "value": ov.per_poll_s,
            "unit": "s",
            "detail": f"work time lost per wake-up of the sampling thread; 95 % CI [{ov.per_poll_ci[0]:.2e}, "
            f"{ov.per_poll_ci[1]:.2e}]",
        },
        {
            "benchmark": "metering overhead, direct (wall)",
            "value": ov.direct,
            "unit": "fraction",
            "detail": f"trimmed mean of {ov.repeats} interleaved pairs at {ov.poll_hz:g} Hz; 95 % CI "
            f"[{ov.direct_ci[0]:+.4f}, {ov.direct_ci[1]:+.4f}] (the check that nothing rate-independent hides)",
        },
        {
            "benchmark": "metering overhead, direct (CPU time)",
            "value": ov.direct_cpu,
            "unit": "fraction",
            "detail": "same pairs, process CPU seconds (all threads, the sampler's included); 95 % CI "
            f"[{ov.direct_cpu_ci[0]:+.4f}, {ov.direct_cpu_ci[1]:+.4f}]",
        },
        {
            "benchmark": "sampling thread CPU share",
            "value": ov.sampler_cpu_share,
            "unit": "fraction",
            "detail": f"CPU seconds of the meter's thread per wall second at {ov.poll_hz:g} Hz",
        },
        {
            "benchmark": "meter start+stop",
            "value": ov.fixed_s,
            "unit": "s",
            "detail": f"one-off per measured block: <= 1 % of blocks longer than {ov.fixed_s / OVERHEAD_TARGET:.2g} s",
        },
    ]


def run_benchmarks(
    configs: tuple[str, ...] = ("WF2", "WF4"),
    seconds: float = 1.0,
    batch: int = 1,
    repeats: int = 3,
    overhead_repeats: int = 10,
    train_config: str | None = "WF2",
    train_segment: int = TRAIN_SEGMENT,
    overhead_work_s: float = 0.75,
) -> pd.DataFrame:
    """Run all benchmarks; one row per measured quantity (``train_config=None`` skips training).

    A bar on stderr names the stage running (the whole takes minutes on a laptop CPU); stdout keeps
    only the table.
    """
    from tqdm.auto import tqdm

    peaks: list[float] = []
    stages = ["synthesis", "bf16", *(["training", "kernel choices"] if train_config else []), "reference", "overhead"]
    bar = tqdm(total=len(stages), desc="bench", unit="stage", file=sys.stderr, leave=False)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(0 if name == stages[0] else 1)

    stage("synthesis")
    rows: list[dict | PeakRatio] = synthesis_vs_peak(configs, seconds, batch, repeats, peaks)
    stage("bf16")
    rows += bf16_speedup(configs[0], seconds, repeats)
    if train_config:
        stage("training")
        rows += training_vs_peak(train_config, repeats, segment=train_segment, peaks=peaks)
        stage("kernel choices")
        rows += kernel_choice_rows(get_config(train_config), train_segment)
    run_peak = max(peaks)
    peak = {
        "benchmark": "matmul peak",
        "value": run_peak,
        "unit": "GFLOP/s",
        "detail": f"float32 2048x2048 torch.mm, best of the run's {len(peaks)} samples "
        "(0.1-s products and the training's sustained windows)",
    }
    stage("reference")
    reference = fast_vs_reference(configs[0])
    stage("overhead")
    overhead = metering_overhead(overhead_repeats, overhead_work_s)
    bar.update(1)
    bar.close()
    rows = [peak, *(r.row(run_peak) if isinstance(r, PeakRatio) else r for r in rows), *reference, *overhead]
    return pd.DataFrame(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench``."""
    parser.add_argument(
        "--config", nargs="+", default=["WF2", "WF4"], help="configurations for the synthesis benchmarks (WF2 WF4)"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of audio per synthesis call (1.0)")
    parser.add_argument("--batch", type=int, default=1, help="synthesis batch size (1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (3)")
    parser.add_argument(
        "--overhead-repeats", type=int, default=10, help="pairs of metered/plain repetitions at each sampler rate (10)"
    )
    parser.add_argument(
        "--train-config", default="WF2", help="configuration of the training-step benchmark; 'none' skips it (WF2)"
    )
    parser.add_argument(
        "--train-segment", type=int, default=TRAIN_SEGMENT, help=f"samples per training example ({TRAIN_SEGMENT})"
    )
    parser.add_argument(
        "--overhead-work", type=float, default=0.75, help="seconds of training per overhead repetition (0.75)"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the benchmarks, profile one synthesis per --config and one --train-config step and write "
        "where the time goes per op and per kind (build/results/breakdown*.csv; waveflow.perf.breakdown)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print them and write ``build/results/bench.csv``."""
    if args.seconds <= 0 or args.batch < 1 or args.repeats < 1 or args.overhead_repeats < 2:
        raise ValueError("bench: --seconds must be > 0, --batch/--repeats >= 1 and --overhead-repeats >= 2")
    if args.overhead_work <= 0 or args.train_segment < 1:
        raise ValueError("bench: --overhead-work must be > 0 s and --train-segment >= 1 sample")
    train_config = None if args.train_config.lower() == "none" else args.train_config
    for name in (*args.config, *([train_config] if train_config else [])):
        get_config(name)  # an unknown name fails here, before minutes of synthesis
    if args.breakdown:
        return _print_breakdowns(tuple(args.config), train_config, args.seconds, args.batch, args.train_segment)
    table = run_benchmarks(
        tuple(args.config),
        args.seconds,
        args.batch,
        args.repeats,
        args.overhead_repeats,
        train_config,
        args.train_segment,
        args.overhead_work,
    )
    path = save_table(table, "bench")
    for row in table.itertuples():
        print(f"{row.benchmark:<30}{row.value:>12.4g} {row.unit:<15}{row.detail}")
    print(f"written to {path}")
    return 0


BREAKDOWN_TOP_OPS = 6  # op rows printed per profiled work (the CSVs hold them all)


def _print_breakdowns(
    configs: tuple[str, ...], train_config: str | None, seconds: float, batch: int, segment: int
) -> int:
    """``bench --breakdown``: :func:`waveflow.perf.breakdown.write_breakdowns` against this run's matmul peak."""
    peak = max(matmul_gflops() for _ in range(3))
    summary, tables = write_breakdowns(configs, train_config, seconds, batch, segment, peak_gflop_s=peak)
    print(f"matmul peak {peak:.0f} GFLOP/s (best of 3)")
    for row in summary.itertuples():
        rate = f"{row.gflop_s:7.1f} GFLOP/s = {row.of_peak:.2f} of peak" if math.isfinite(row.gflop_s) else ""
        print(f"{row.work:<10}{row.config:<6}{row.kind:<44}{row.seconds:8.3f} s {row.share:6.1%}  {rate}")
    for (work, config), table in tables.items():
        print(f"{work} {config}, slowest ops:")
        for op in by_op(table).head(BREAKDOWN_TOP_OPS).itertuples():
            rate = f"{op.gflop_s:6.1f} GFLOP/s" if math.isfinite(op.gflop_s) else ""
            print(f"  {op.op:<30}{op.gemm:<24}{op.calls:>7} calls {op.share:6.1%}  {rate}")
    print("per-op tables: build/results/breakdown_<work>_<config>.csv; summary: build/results/breakdown.csv")
    return 0
