"""The CPU kernel-choice rows of ``make bench``: the paired timing says which side is slower, and
both sides compute the same gradients (so the rows compare like with like)."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from waveflow import WaveFlowConfig
from waveflow.model.modules import CPU_KERNELS, CausalConv2d, CpuKernelChoice, PointwiseConv2d
from waveflow.perf.cpu_kernels import forward_backward_seconds, kernel_choice_rows, paired_speedup, with_library_kernel


def test_paired_speedup_says_which_side_is_slower():
    x = torch.randn(4, requires_grad=True)

    def slow() -> torch.Tensor:
        time.sleep(0.01)
        return x * 2

    median, q1, q3 = paired_speedup(slow, lambda: x * 2, [x], repeats=4)
    assert median < 0.5 and q1 <= median <= q3  # "ours" (slow) is several times slower than the library
    assert paired_speedup(lambda: x * 2, slow, [x], repeats=4)[0] > 2


def test_forward_backward_clears_the_leaves_gradients_first():
    x = torch.randn(3, requires_grad=True)
    for _ in range(2):
        forward_backward_seconds(lambda: x * 3, [x])
    assert torch.equal(x.grad, torch.full((3,), 3.0))  # not accumulated over calls


@pytest.mark.parametrize("make", [lambda: PointwiseConv2d(6, 8), lambda: CausalConv2d(6, 8, 3, 2, 4)])
def test_the_compared_paths_give_the_same_gradients(make):
    conv = make()
    x = torch.randn(2, 6, 5, 40, requires_grad=True)
    if isinstance(conv, CausalConv2d):
        library = lambda: F.conv2d(  # noqa: E731
            F.pad(x, (conv.pad_w, conv.pad_w, conv.pad_h, 0)), conv.weight, conv.bias, dilation=conv.dilation
        )
    else:
        library = lambda: F.conv2d(x, conv.weight, conv.bias)  # noqa: E731
    grads = []
    for forward in (lambda: conv(x), library):
        forward_backward_seconds(forward, [x, conv.weight, conv.bias])
        grads.append([t.grad.clone() for t in (x, conv.weight, conv.bias)])
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("choice", ["input_grad_by_forward", "weight_grad_by_taps"])
def test_a_dilated_choice_switched_off_gives_the_same_gradients(choice):
    """Each dilated-convolution row times the model's path against the same path with one choice
    switched back to oneDNN's kernel: both sides must compute the same gradients."""
    torch.manual_seed(0)
    conv = CausalConv2d(6, 8, 3, 2, 4)
    x = torch.randn(2, 6, 5, 40, requires_grad=True)
    grads = []
    for forward in (lambda: conv(x), lambda: with_library_kernel(choice, conv, x)):
        forward_backward_seconds(forward, [x, conv.weight, conv.bias])
        grads.append([t.grad.clone() for t in (x, conv.weight, conv.bias)])
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert CPU_KERNELS == CpuKernelChoice()  # the switch is undone


def test_kernel_choice_rows_cover_both_pointwise_products_and_both_dilated_conv_gradients():
    cfg = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=4, permutation="reverse")
    rows = kernel_choice_rows(cfg, segment=512, repeats=2)
    assert [r["benchmark"] for r in rows] == [
        "CPU kernel: 1x1 conditioning 80 -> 16 as GEMMs",
        "CPU kernel: 1x1 residual/skip 8 -> 16 as GEMMs",
        "CPU kernel: dilated conv, input gradient by the forward kernel",
        "CPU kernel: dilated conv, weight gradient as width-tap GEMMs",
    ]
    assert all(r["value"] > 0 for r in rows)
    for row in rows[2:]:
        assert f"dilation ({cfg.dilations_h[2]}, {cfg.dilations_w[2]})" in row["detail"]  # the middle layer
    assert "backward-data" in rows[2]["detail"] and "backward-weights" in rows[3]["detail"]
