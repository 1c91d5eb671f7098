"""How much a running :class:`~waveflow.energy.EnergyMeter` slows the work it measures (``make bench``).

A meter's sampling thread at 10 Hz costs about 0.1 % of a CPU, far below what paired wall times on
a shared machine resolve (one pair scatters by several per cent). :func:`measure_overhead` therefore
also runs pairs with the sampler *amplified* to ~1 kHz, where the slowdown is tens of times larger,
and divides it by the wake-ups it took: the cost per poll, which times 10 Hz is the overhead, with
an interval as many times narrower. Direct pairs at 10 Hz (wall and process CPU time) check that
nothing independent of the rate hides beside it. Trimmed means and bootstrap intervals throughout;
the verdict says "undecided" when an interval straddles the target (:class:`Overhead`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..energy import EnergyMeter
from ..energy.readers import DEFAULT_POLL_HZ

OVERHEAD_TARGET = 0.01  # measuring energy may cost at most 1 % of the work measured
TRIM = 0.2  # fraction cut from each end of the paired ratios before averaging


def trimmed_mean_ci(values: list[float], trim: float = TRIM, level: float = 0.95, seed: int = 0) -> tuple:
    """``(trimmed mean, (low, high))``: the mean of ``values`` without the ``trim`` fraction at each
    end, and its percentile-bootstrap confidence interval (2,000 resamples). Trimming drops the pairs
    that another process on a shared machine disturbed, without assuming which side it hit."""
    data = np.asarray(values, dtype=float)
    centre = float(stats.trim_mean(data, trim))
    if len(data) < 3:
        return centre, (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    boot = stats.trim_mean(data[rng.integers(0, len(data), (2000, len(data)))], trim, axis=1)
    tail = (1 - level) / 2 * 100
    return centre, (float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail)))


@dataclass(frozen=True)
class Overhead:
    """Interleaved pairs of the same work without and with a running meter.

    A sampler at 10 Hz costs about 0.1 % of a CPU, far below what paired wall times on a shared
    machine resolve (one pair scatters by several per cent). The meter's running cost grows with
    its wake-ups, so the benchmark also measures pairs with the sampler *amplified* to ~1 kHz,
    where the slowdown is tens of times larger, and divides it by the wake-ups it took: the
    **cost per poll** (seconds of work lost per wake-up). That times the nominal rate is the
    overhead at 10 Hz, with an interval as many times narrower. The direct pairs at the nominal rate
    check that nothing independent of the rate hides beside it.

    Attributes:
        relative: the headline, ``per_poll_s x poll_hz``, the fraction of the work lost at the
            nominal rate; ``relative_ci`` its 95 % bootstrap interval.
        per_poll_s, per_poll_ci: trimmed mean of ``(metered - plain) / polls`` over the amplified
            pairs, and its interval.
        poll_hz: the nominal rate; ``amplified_polls_per_s``: the wake-ups per second reached
            when amplified (median).
        direct, direct_ci: trimmed mean of the paired wall ratios ``metered / plain - 1`` at the
            nominal rate, and its interval; ``direct_cpu``/``direct_cpu_ci`` the same for process
            CPU time (all threads, the sampler's included).
        sampler_cpu_share: CPU seconds of the sampling thread per wall second at the nominal rate.
        fixed_s: median one-off cost of ``start()`` + ``stop()`` per measured block, outside the work.
        repeats: pairs at each rate; polling: whether the sampling thread ran.
    """

    relative: float
    relative_ci: tuple[float, float]
    per_poll_s: float
    per_poll_ci: tuple[float, float]
    poll_hz: float
    amplified_polls_per_s: float
    direct: float
    direct_ci: tuple[float, float]
    direct_cpu: float
    direct_cpu_ci: tuple[float, float]
    sampler_cpu_share: float
    fixed_s: float
    repeats: int
    polling: bool

    @property
    def verdict(self) -> str:
        """ "met" when the extrapolated interval is under the target and the direct pairs do not show
        more than it; "missed" when either interval lies wholly above the target; else "undecided"."""
        if self.relative_ci[0] > OVERHEAD_TARGET or self.direct_ci[0] > OVERHEAD_TARGET:
            return "missed"
        if self.relative_ci[1] <= OVERHEAD_TARGET:
            return "met"
        return "undecided"


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


class _Block(NamedTuple):
    """One timed repetition of the work; the meter's fields stay 0 for a plain one."""

    wall: float
    cpu: float
    fixed_s: float = 0.0  # start() + stop(), outside the timed work
    sampler_share: float = 0.0  # CPU seconds of the sampling thread per wall second
    polls: int = 0


AMPLIFIED_HZ = 1000.0  # sampler rate of the amplified pairs (the wake-ups actually reached are counted)


def measure_overhead(
    repeats: int = 10,
    work_s: float = 0.3,
    poll_hz: float = DEFAULT_POLL_HZ,
    amplified_hz: float = AMPLIFIED_HZ,
    simulate_polling: bool = True,
    seed: int = 0,
    step: Callable[[], None] | None = None,
) -> Overhead:
    """Relative slowdown of a training-like loop while an :class:`EnergyMeter` runs (target <= 1 %).

    Each repetition is ~``work_s`` of ``step`` calls. ``repeats`` pairs (plain, metered) run at the
    nominal ``poll_hz`` and ``repeats`` at ``amplified_hz``, interleaved with each other, and each
    pair alternates which half goes first, so drift and order effects cancel. The work is timed
    between ``start()`` and ``stop()``, whose own cost is reported apart as ``fixed_s``. See
    :class:`Overhead` for how the pairs become the headline figure.

    Args:
        repeats: pairs at each of the two rates (default 10).
        work_s: target seconds of work per repetition (default 0.3).
        poll_hz: nominal sampling rate of the meter's thread (default 10).
        amplified_hz: the rate that makes the per-poll cost measurable (default 1 kHz).
        simulate_polling: when no GPU needs power polling here, use a stand-in GPU so the
            sampling thread runs anyway (the worst case: default True).
        seed: torch seed.
        step: one unit of the work to measure (e.g. a WaveFlow training step, as ``make bench``
            passes); default: a step of a small conv net.
    """
    if repeats < 2:
        raise ValueError(f"measure_overhead: repeats={repeats}; expected >= 2 pairs per rate")
    if not amplified_hz > poll_hz:
        raise ValueError(f"measure_overhead: amplified_hz={amplified_hz} must exceed poll_hz={poll_hz}")
    torch.manual_seed(seed)
    if step is None:
        step = _conv_net_step()
    bench = _Pairs(step, _steps_for(step, work_s), simulate_polling)
    EnergyMeter("warm-up", pue=1.0, cpu_tdp_w=100.0, warn=False).stop()  # import pynvml, read the TDP table once
    wall_ratios, cpu_ratios, fixed, shares, per_poll, rates = [], [], [], [], [], []
    for i in range(repeats):
        p, m = bench.pair(i, poll_hz)
        wall_ratios.append(m.wall / p.wall - 1.0)
        cpu_ratios.append(m.cpu / p.cpu - 1.0 if p.cpu > 0 else math.nan)
        fixed.append(m.fixed_s)
        shares.append(m.sampler_share)
        p, m = bench.pair(i + 1, amplified_hz)
        per_poll.append((m.wall - p.wall) / max(m.polls, 1))
        rates.append(m.polls / m.wall)
    direct, direct_ci = trimmed_mean_ci(wall_ratios)
    cpu, cpu_ci = trimmed_mean_ci([c for c in cpu_ratios if math.isfinite(c)] or [math.nan])
    cost, cost_ci = trimmed_mean_ci(per_poll)
    return Overhead(
        relative=cost * poll_hz,
        relative_ci=(cost_ci[0] * poll_hz, cost_ci[1] * poll_hz),
        per_poll_s=cost,
        per_poll_ci=cost_ci,
        poll_hz=poll_hz,
        amplified_polls_per_s=statistics.median(rates),
        direct=direct,
        direct_ci=direct_ci,
        direct_cpu=cpu,
        direct_cpu_ci=cpu_ci,
        sampler_cpu_share=statistics.median(shares),
        fixed_s=statistics.median(fixed),
        repeats=repeats,
        polling=simulate_polling,
    )


def _conv_net_step() -> Callable[[], None]:
    """The default work: one SGD step of a small 1-D conv net on a fixed batch."""
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

    return step


def _steps_for(step: Callable[[], None], work_s: float) -> int:
    """Calls of ``step`` that take about ``work_s``, timed after three warm-up calls."""
    for _ in range(3):
        step()
    t = time.perf_counter()
    step()
    return max(1, round(work_s / max(time.perf_counter() - t, 1e-6)))


@dataclass(frozen=True)
class _Pairs:
    """The timed repetitions of :func:`measure_overhead`: ``n_steps`` calls of ``step``, plain or
    under a meter (on a stand-in GPU with ``simulate_polling``)."""

    step: Callable[[], None]
    n_steps: int
    simulate_polling: bool

    def work(self) -> _Block:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(self.n_steps):
            self.step()
        return _Block(time.perf_counter() - wall, time.process_time() - cpu)

    def metered(self, hz: float) -> _Block:
        meter = EnergyMeter(
            "overhead",
            pue=1.0,
            cpu_tdp_w=100.0,
            poll_hz=hz,
            nvml=_ConstantPowerNvml() if self.simulate_polling else None,
            warn=False,
        )
        t0 = time.perf_counter()
        meter.start()
        t1 = time.perf_counter()
        block = self.work()
        t2 = time.perf_counter()
        meter.stop()
        fixed_s = (t1 - t0) + (time.perf_counter() - t2)
        return block._replace(fixed_s=fixed_s, sampler_share=meter.poll_cpu_s / block.wall, polls=meter.polls)

    def pair(self, i: int, hz: float) -> tuple[_Block, _Block]:
        """(plain, metered), run in the order that alternates with ``i``."""
        if i % 2:
            m = self.metered(hz)
            return self.work(), m
        p = self.work()
        return p, self.metered(hz)
