"""``bench --breakdown``: per-op tables that account for what runs, and a seconds-long smoke of the command."""

from __future__ import annotations

import pytest
import torch

from waveflow import WaveFlowConfig
from waveflow.cli import main
from waveflow.perf import bench, breakdown

TINY = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=2, permutation="reverse")


@pytest.mark.parametrize(
    ("op", "shapes", "expected"),
    [
        ("aten::addmm", [[128, 1], [128, 80], [80, 1376], [], []], (1, 128, 80, 1376)),
        ("aten::mm", [[64, 512], [512, 30]], (1, 64, 512, 30)),
        ("aten::baddbmm", [[2, 128, 1], [2, 128, 64], [2, 64, 3840], [], []], (2, 128, 64, 3840)),
        ("aten::bmm", [[2, 80, 128], [2, 128, 3840]], (2, 80, 128, 3840)),
        ("aten::addmm", [[128]], None),  # an overload the profiler recorded otherwise: no shape, not a wrong one
        ("aten::sigmoid_", [[128, 1376]], None),
    ],
)
def test_gemm_shape_reads_the_profilers_input_shapes(op, shapes, expected):
    assert breakdown.gemm_shape(op, shapes) == expected


def test_ops_fall_into_their_kinds():
    assert breakdown.kind_of("aten::addmm") == "matrix products and convolutions"
    assert breakdown.kind_of("aten::convolution_backward") == "matrix products and convolutions"
    assert breakdown.kind_of("aten::sigmoid_") == "element-wise"  # in place: the trailing underscore is dropped
    assert breakdown.kind_of("aten::_foreach_addcdiv_") == "element-wise"  # Adam
    assert breakdown.kind_of("aten::copy_") == "copies and fills"
    assert breakdown.kind_of("aten::as_strided") == "other ops"


def test_op_table_accounts_for_every_call_and_rates_the_products():
    a, b, c = torch.randn(64, 32), torch.randn(32, 200), torch.zeros(64, 200)
    torch.addmm(c, a, b)  # outside the profile: first-call costs
    with breakdown.profile(activities=[breakdown.ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(5):
            torch.addmm(c, a, b, out=c)
        c.sigmoid_()
    table = breakdown.op_table(prof, wall_s=1.0)
    products = table[table.op == "aten::addmm"]
    assert products.calls.sum() == 5 and products.gemm.iloc[0] == "1 x 64 x 32 x 200"
    assert (products.gflop_s > 0).all()
    assert table.loc[table.op == "aten::sigmoid_", "kind"].item() == "element-wise"
    assert table.gflop_s[table.op != "aten::addmm"].isna().all()  # a rate only where the FLOPs are known
    merged = breakdown.by_op(table)
    assert merged.loc[merged.op == "aten::addmm", "calls"].item() == 5
    assert merged.loc[merged.op == "aten::addmm", "gflop_s"].item() == pytest.approx(products.gflop_s.iloc[0])
    summary = breakdown.kind_summary(table, wall_s=1.0, plain_s=0.9, flops=1e9)
    assert summary.share.sum() == pytest.approx(1.0)  # the kinds and what lies outside them fill the wall time
    assert summary.set_index("kind").loc[breakdown.OUTSIDE, "seconds"] > 0.9


def test_bench_breakdown_writes_the_op_tables_and_the_summary(monkeypatch, saved_tables, capsys):
    written = saved_tables(breakdown)
    monkeypatch.setattr(breakdown, "get_config", lambda name: TINY)
    monkeypatch.setattr(bench, "get_config", lambda name: TINY)
    monkeypatch.setattr(bench, "matmul_gflops", lambda: 100.0)
    args = ["bench", "--breakdown", "--config", "WF1", "--seconds", "0.05", "--train-config", "WF1"]
    assert main([*args, "--train-segment", "1024"]) == 0
    assert set(written) == {"breakdown_synthesis_WF1", "breakdown_training_WF1", "breakdown"}
    synthesis = written["breakdown_synthesis_WF1"]
    # Per flow and row: each layer's conditioning and k = 3 taps, the residual of every layer but the
    # last, one stacked skip product and the output product: 2 x 4 + 1 + 1 + 1 = 11 addmm, over
    # h - 1 = 7 rows and 2 flows.
    assert synthesis.loc[synthesis.op == "aten::addmm", "calls"].sum() == 11 * 7 * 2
    training = written["breakdown_training_WF1"]
    assert (training.op == "aten::convolution_backward").any()  # the backward pass is in the profile
    summary = written["breakdown"]
    for work, part in summary.groupby("work"):
        assert part.share.sum() == pytest.approx(1.0, abs=1e-6), work
        assert breakdown.OUTSIDE in set(part.kind)
    products = summary[summary.kind == "matrix products and convolutions"]
    assert (products.of_peak > 0).all() and (products.of_peak == products.gflop_s / 100.0).all()
    out = capsys.readouterr().out
    assert "of peak" in out and "synthesis WF1, slowest ops:" in out and "aten::addmm" in out


class _Event:
    def __init__(self, **times):
        self.__dict__.update(times)


def test_device_seconds_sums_each_events_own_device_time():
    events = [_Event(self_device_time_total=1500.0), _Event(self_device_time_total=0.0), _Event()]
    assert breakdown.device_seconds(events) == pytest.approx(0.0015)  # CPU-only events add nothing
    assert breakdown.device_seconds([_Event(self_cuda_time_total=250.0)]) == pytest.approx(0.00025)  # torch < 2.4


@pytest.mark.requires_gpu
def test_gpu_busy_sees_the_kernels_of_a_launch_bound_and_a_compute_bound_workload():
    small, large = torch.randn(8, 8, device="cuda"), torch.randn(4096, 4096, device="cuda")

    def launches():
        for _ in range(200):
            small.add_(1.0)

    kernels, wall = breakdown.gpu_busy(launches)
    busy_small = kernels / wall
    kernels, wall = breakdown.gpu_busy(lambda: [large @ large for _ in range(5)])
    assert 0 < busy_small < kernels / wall <= 1.0 + 1e-6  # tiny kernels leave the GPU idle between launches


def test_by_op_merges_the_shapes_of_one_op_but_not_different_gemms():
    with breakdown.profile(activities=[breakdown.ProfilerActivity.CPU], record_shapes=True) as prof:
        for n in (100, 200, 300):  # one element-wise op in three shapes, like a convolution per layer
            torch.sigmoid(torch.ones(n))
        for k in (8, 16):  # two GEMM shapes stay apart: their rates differ
            torch.mm(torch.ones(4, k), torch.ones(k, 4))
    merged = breakdown.by_op(breakdown.op_table(prof, wall_s=1.0)).set_index(["op", "gemm"])
    assert merged.loc[("aten::sigmoid", ""), "calls"] == 3
    assert {g for op, g in merged.index if op == "aten::mm"} == {"1 x 4 x 8 x 4", "1 x 4 x 16 x 4"}


@pytest.mark.parametrize("dilation", [(1, 1), (2, 4)])
def test_convolution_flops_from_the_profile_match_flop_counter_mode(dilation):
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 8, 10, 50, requires_grad=True)
    w = torch.randn(16, 8, 3, 3, requires_grad=True)

    def step():
        torch.nn.functional.conv2d(x, w, dilation=dilation).sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    with breakdown.profile(activities=[breakdown.ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    table = breakdown.op_table(prof, wall_s=1.0)
    convs = table[table.op.isin(["aten::mkldnn_convolution", "aten::convolution_backward"])]
    if len(convs) < 2:
        pytest.skip("this build does not run oneDNN's convolution kernels")
    assert (convs.gflop_s * convs.self_s * 1e9).sum() == pytest.approx(counter.get_total_flops())
    assert breakdown.conv_flops("aten::mkldnn_convolution", [[1, 2, 3, 4]], None) is None  # no arguments: no count
