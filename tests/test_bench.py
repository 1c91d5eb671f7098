"""``make bench``: the statistics behind its verdicts, and a seconds-long smoke of the whole command.

No test here asserts a speed: the targets live in the bench output and the README (timed unit tests
on shared machines only measure the neighbours)."""

from __future__ import annotations

import time

from waveflow import WaveFlowConfig
from waveflow.cli import main
from waveflow.perf import bench


def test_sustained_matmul_runs_back_to_back_for_its_window():
    start = time.perf_counter()
    assert bench.sustained_matmul_gflops(0.05, size=32) > 0
    assert time.perf_counter() - start >= 0.05  # the window is a minimum, not a budget
    assert bench.sustained_matmul_gflops(0.0, size=32) > 0  # at least one product, never a division by zero


def test_bench_command_writes_every_row(monkeypatch, saved_tables, capsys):
    written = saved_tables(bench)
    # Every benchmark at the real structure's smallest size: a smoke of the command, seconds long.
    tiny = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=2, permutation="reverse")
    monkeypatch.setattr(bench, "get_config", lambda name: tiny)
    samples = iter(range(1, 100))  # the peak's samples in call order: synthesis first, then training
    monkeypatch.setattr(bench, "matmul_gflops", lambda: float(next(samples)))
    monkeypatch.setattr(bench, "sustained_matmul_gflops", lambda seconds: 3.0)  # above every 0.1-s sample
    args = ["bench", "--config", "WF1", "--seconds", "0.03", "--repeats", "1", "--overhead-repeats", "2"]
    args += ["--overhead-work", "0.05", "--train-config", "WF1", "--train-segment", "1024"]
    assert main(args) == 0
    table = written["bench"].set_index("benchmark")
    rows = ("matmul peak", "synthesis / peak WF1", "training / peak WF1", "training / sustained peak WF1")
    for row in rows + ("synthesis bf16 / fp32 speed-up WF1",):
        assert row in table.index, row
    assert table.loc["training / sustained peak WF1", "value"] > 0
    choices = table[table.index.str.startswith("CPU kernel: ")]
    assert len(choices) == 4 and (choices.value > 0).all()  # both 1x1 products and both dilated-conv gradients
    assert choices.detail.str.contains("interleaved pairs, interquartile").all()
    # The run's peak is the best of all its samples, the training's sustained windows included, and every
    # "/ peak" ratio divides by it (not by the lower samples taken beside its own work).
    assert table.loc["matmul peak", "value"] == 3.0
    assert table.loc["synthesis / peak WF1", "value"] == table.loc["fast synthesis WF1", "value"] / 3.0
    assert table.loc["training / peak WF1", "value"] == table.loc["training step WF1", "value"] / 3.0
    assert "the best interleaved with this work: 1)" in table.loc["synthesis / peak WF1", "detail"]
    assert "the best interleaved with this work: 3)" in table.loc["training / peak WF1", "detail"]
    bf16 = table.loc["synthesis bf16 / fp32 speed-up WF1"]
    assert bf16.value > 0 or bf16.detail.startswith("not measured: ")  # measured, or says why not
    assert "target <= 0.01" in table.loc["metering overhead (wall)", "detail"]
    assert table.loc["metering cost per poll", "unit"] == "s"
    assert "written to" in capsys.readouterr().out


def test_a_peak_ratio_never_divides_by_less_than_its_own_samples():
    ratio = bench.PeakRatio("training / peak WF2", achieved=90.0, interleaved_peak=150.0)
    assert ratio.row(180.0)["value"] == 0.5
    assert ratio.row(120.0)["value"] == 0.6  # a run peak below the work's own sample cannot be the peak


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "--overhead-work", "0"]) == 2
    assert "--overhead-work must be > 0" in capsys.readouterr().err
    assert main(["bench", "--train-config", "WF9"]) == 2
    assert "unknown name 'WF9'" in capsys.readouterr().err
