"""``python -m waveflow energy -- CMD [ARGS...]``, the text summary, and the overhead benchmark.

Kept apart from :mod:`waveflow.energy` (which re-exports everything here) so the meter module
stays small. The command is measured like ``time`` measures it: wall clock around the
subprocess, and for the CPU estimate the CPU seconds of the subprocess tree only (not of this
Python process, which just waits).
"""
from __future__ import annotations

import argparse
import functools
import math
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from . import energy_readers as er
from .energy import EnergyMeter
from .energy_log import DEFAULT_LOG, EnergyRecord, append_record


def summary(record: EnergyRecord) -> str:
    """One screen of text: wall time, energy per component and method, totals, CO2."""
    lines = [f"energy of {record.label or 'block'}: wall {record.wall_s:.2f} s"]
    for c in record.components:
        lines.append(f"  {c.kind:<5}{c.joules:>12.1f} J  {c.method:<27} {c.device}")
    if not record.components:
        lines.append("  (no component could be measured)")
    if not math.isnan(record.cpu_tdp_w):
        lines.append(f"  CPU TDP {record.cpu_tdp_w:g} W ({record.cpu_tdp_match}), utilisation {record.cpu_utilisation:.1%}")
    kwh = record.energy_j / 3.6e6
    lines.append(f"  total {record.energy_j:.1f} J = {kwh:.3e} kWh; x PUE {record.pue:g} ({record.pue_name}) "
                 f"= {record.energy_j_pue:.1f} J = {record.energy_kwh_pue:.3e} kWh")
    lines.append(f"  CO2e {record.co2e_g:.3g} g at {record.intensity_g_per_kwh:g} g/kWh "
                 f"({record.intensity_code}: {record.intensity_source})")
    for s in record.sections[:10]:
        lines.append(f"  section {s.label!r}: {s.end_s - s.start_s:.2f} s, {s.total_j:.1f} J")
    if len(record.sections) > 10:
        lines.append(f"  ... {len(record.sections) - 10} more sections")
    lines += [f"  note: {n}" for n in record.notes]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``energy``."""
    parser.add_argument("--intensity", default=None, help="carbon-intensity code (default: waveflow.carbon's default)")
    parser.add_argument("--pue", default=None, help="PUE preset name or value >= 1 (default: waveflow.carbon's default)")
    parser.add_argument("--cpu-tdp", type=float, default=None, metavar="W", help="CPU TDP in watts per package, overriding the table lookup")
    parser.add_argument("--label", default=None, help="label of the row in the log (default: the command)")
    parser.add_argument("--log", default=str(DEFAULT_LOG), metavar="PATH", help=f"CSV log to append to (default: {DEFAULT_LOG})")
    parser.add_argument("--no-log", action="store_true", help="print the summary only, append nothing")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to measure, after --")


def run(args: argparse.Namespace) -> int:
    """Run and measure the command; print the summary to stderr; return the command's exit code.

    The summary goes to stderr so the command's stdout can still be piped. A signal death
    returns 128 + signal like a shell; a missing executable returns 127.
    """
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ValueError("energy: expected a command after --, e.g. `python -m waveflow energy -- python train.py`")
    pue = args.pue
    if pue is not None:
        try:
            pue = float(pue)
        except ValueError:
            pass  # a preset name
    command = shlex.join(cmd)
    short = " ".join(command.split())
    label = args.label or (short if len(short) <= 80 else short[:77] + "...")
    meter = EnergyMeter(label, intensity=args.intensity, pue=pue, cpu_tdp_w=args.cpu_tdp,
                        cpu_seconds=functools.partial(er.process_tree_cpu_seconds, include_self=False))
    meter.start()
    try:
        proc = subprocess.Popen(cmd)
    except OSError as exc:
        meter.stop()
        print(f"python -m waveflow energy: error: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # the terminal sent SIGINT to the child too; wait for it to finish
            continue
    code = 128 - code if code < 0 else code
    record = meter.stop(exit_code=code, command=command)
    print(summary(record), file=sys.stderr)
    if not args.no_log:
        try:
            print(f"  appended to {append_record(record, args.log)}", file=sys.stderr)
        except (OSError, ValueError) as exc:
            print(f"  could not append to {args.log}: {exc}", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------------
# overhead benchmark
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

    def nvmlInit(self): pass
    def nvmlShutdown(self): pass
    def nvmlDeviceGetCount(self): return 1
    def nvmlDeviceGetHandleByIndex(self, i): return i
    def nvmlDeviceGetName(self, h): return "simulated GPU (benchmark)"
    def nvmlDeviceGetPowerUsage(self, h): return 250_000
    def nvmlDeviceGetTotalEnergyConsumption(self, h): raise self.NVMLError_NotSupported("no counter")


def measure_overhead(repeats: int = 7, work_s: float = 0.3, poll_hz: float = er.DEFAULT_POLL_HZ,
                     simulate_polling: bool = True, seed: int = 0, step: Callable[[], None] | None = None) -> Overhead:
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
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if step is None:
        net = nn.Sequential(nn.Conv1d(1, 32, 9, padding=4), nn.ReLU(), nn.Conv1d(32, 32, 9, padding=4), nn.ReLU(),
                            nn.Conv1d(32, 1, 9, padding=4))
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
        meter = EnergyMeter("overhead", pue=1.0, cpu_tdp_w=100.0, poll_hz=poll_hz,
                            nvml=_ConstantPowerNvml() if simulate_polling else None)
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
            metered_times.append(metered()); plain_times.append(plain())  # noqa: E702
        else:
            plain_times.append(plain()); metered_times.append(metered())  # noqa: E702
    work_times = [m[0] for m in metered_times]
    return Overhead(statistics.median(plain_times), statistics.median(work_times), min(plain_times), min(work_times),
                    statistics.median(m[1] for m in metered_times), statistics.median(m[2] for m in metered_times),
                    repeats, simulate_polling)

