"""The metering-overhead statistics of ``make bench``: trimmed means, verdicts, the amplified sampler."""

from __future__ import annotations

import math

import pytest

from waveflow.perf import overhead


def test_trimmed_mean_ignores_disturbed_pairs_and_brackets_the_centre():
    quiet = [0.002, 0.004, 0.003, 0.001, 0.005, 0.002, 0.004, 0.003]
    disturbed = quiet + [0.5, -0.4]  # one pair hit by a neighbour on each side
    centre, (low, high) = overhead.trimmed_mean_ci(disturbed)
    assert 0.001 <= centre <= 0.005  # a plain mean would be 0.013
    assert low <= centre <= high
    assert overhead.trimmed_mean_ci(disturbed) == (centre, (low, high))  # seeded bootstrap: reproducible
    assert math.isnan(overhead.trimmed_mean_ci([0.1, 0.2])[1][0])  # too few pairs for an interval


@pytest.mark.parametrize(
    ("ci", "verdict"), [((-0.002, 0.004), "met"), ((0.003, 0.02), "undecided"), ((0.012, 0.03), "missed")]
)
def test_overhead_verdict_needs_the_whole_interval_on_one_side(ci, verdict):
    quiet = (-0.02, 0.03)  # direct pairs: wide, straddling the target
    ov = overhead.Overhead(sum(ci) / 2, ci, 1e-4, (0, 0), 10.0, 900.0, 0.0, quiet, 0.0, quiet, 0.001, 0.05, 10, True)
    assert ov.verdict == verdict


def test_overhead_verdict_is_missed_when_the_direct_pairs_show_more_than_the_target():
    # The per-poll extrapolation is small, but the direct pairs say the meter costs > 1 % anyway:
    # something independent of the polling rate, which the verdict must not hide.
    ov = overhead.Overhead(
        0.001, (0.0, 0.002), 1e-4, (0, 2e-4), 10.0, 900.0, 0.05, (0.03, 0.07), 0.05, (0.03, 0.07), 0.001, 0.05, 10, True
    )
    assert ov.verdict == "missed"


def test_measure_overhead_extrapolates_the_cost_per_poll():
    ov = overhead.measure_overhead(repeats=2, work_s=0.05, amplified_hz=500.0)
    assert ov.repeats == 2 and ov.polling and ov.poll_hz == 10
    assert ov.relative_ci[0] <= ov.relative <= ov.relative_ci[1] or math.isnan(ov.relative_ci[0])
    assert ov.relative == pytest.approx(ov.per_poll_s * 10)
    assert ov.amplified_polls_per_s > 50  # the amplified sampler really woke up far more than 10 times a second
    assert math.isfinite(ov.direct_cpu) and ov.fixed_s > 0 and 0 <= ov.sampler_cpu_share < 0.5
    with pytest.raises(ValueError, match="repeats=1"):
        overhead.measure_overhead(repeats=1)
    with pytest.raises(ValueError, match="amplified_hz=5"):
        overhead.measure_overhead(amplified_hz=5.0)
