"""Are the model's own CPU kernels still the faster choice on this machine? (rows of ``make bench``)

Three times :mod:`waveflow.model.modules` replaces oneDNN's kernel on the CPU with its own, each
choice made from measurements on a 2-vCPU AMD EPYC (AVX2, torch 2.13):

* :class:`~waveflow.model.modules.PointwiseConv2d` runs the 1x1 convolutions (conditioning
  n_mels -> 2r, residual/skip r -> 2r) as ``baddbmm``, so their forward and both gradients are GEMMs;
* :class:`~waveflow.model.modules.CausalConv2d` takes a dilated convolution's input gradient from
  the forward kernel instead of oneDNN's backward-data kernel, and
* its weight gradient from GEMMs over width-shifted copies of the input instead of oneDNN's
  backward-weights kernel (:func:`~waveflow.model.modules.weight_grad_by_taps`).

The two dilated-convolution choices are switches (:data:`~waveflow.model.modules.CPU_KERNELS`), so
a family where one loses can turn it off without touching the other.

oneDNN is tuned for Intel first, so on an AVX-512 machine the library's kernels may win where they
lost on AMD. Each row here times forward + backward (every gradient a training step needs) of the
model's path and of the plain library path, on a training layer's shapes, interleaved, and reports
the median of the paired speed-ups (> 1: the model's choice is faster here) with its interquartile
range. A run on a new CPU family thus says at once whether a choice should be revisited.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..model import WaveFlowConfig
from ..model.modules import CausalConv2d, PointwiseConv2d, cpu_kernel_choice


def forward_backward_seconds(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> float:
    """Wall seconds of ``forward()`` and the backward pass of its output against a fixed gradient
    (all ones: the values do not change the kernels' cost); the leaves' gradients are cleared first."""
    for leaf in leaves:
        leaf.grad = None
    t = time.perf_counter()
    out = forward()
    out.backward(torch.ones_like(out))
    return time.perf_counter() - t


def paired_speedup(
    ours: Callable[[], torch.Tensor], library: Callable[[], torch.Tensor], leaves: list[torch.Tensor], repeats: int
) -> tuple[float, float, float]:
    """``(median, lower quartile, upper quartile)`` of ``library time / our time`` over ``repeats``
    interleaved pairs, each pair alternating which goes first (after one warm-up call of each)."""
    forward_backward_seconds(ours, leaves)
    forward_backward_seconds(library, leaves)
    ratios = []
    for i in range(repeats):
        if i % 2:
            lib = forward_backward_seconds(library, leaves)
            own = forward_backward_seconds(ours, leaves)
        else:
            own = forward_backward_seconds(ours, leaves)
            lib = forward_backward_seconds(library, leaves)
        ratios.append(lib / own)
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q1, q3


def kernel_choice_rows(config: WaveFlowConfig, segment: int, repeats: int = 10, seed: int = 0) -> list[dict]:
    """One ``make bench`` row per CPU kernel choice, on the shapes of ``config`` training at batch 2 x ``segment``:
    the two 1x1 products and the dilated convolution of the middle layer (see the module docstring)."""
    torch.manual_seed(seed)
    r, n_mels, h = config.res_channels, config.n_mels, config.n_height
    rows, width = h - 1, segment // h
    x = torch.randn(2, r, rows, width, requires_grad=True)
    c = torch.randn(2, n_mels, rows, width, requires_grad=True)  # the upsampler's output: it needs its gradient
    shape = f"batch 2 x {rows} rows x {width} columns"
    out: list[dict] = []
    for name, conv, inp in (
        (f"1x1 conditioning {n_mels} -> {2 * r} as GEMMs", PointwiseConv2d(n_mels, 2 * r), c),
        (f"1x1 residual/skip {r} -> {2 * r} as GEMMs", PointwiseConv2d(r, 2 * r), x),
    ):
        leaves = [inp, conv.weight, conv.bias]
        median, q1, q3 = paired_speedup(
            lambda conv=conv, inp=inp: conv(inp),
            lambda conv=conv, inp=inp: F.conv2d(inp, conv.weight, conv.bias),
            leaves,
            repeats,
        )
        out.append(_row(name, median, q1, q3, f"against oneDNN's 1x1 convolution; {shape}", repeats))
    layer = config.n_layers // 2
    dh, dw = config.dilations_h[layer], config.dilations_w[layer]
    conv = CausalConv2d(r, 2 * r, config.kernel_size, dh, dw)
    where = f"layer {layer}, dilation ({dh}, {dw}), {r} -> {2 * r}; {shape}"
    for name, choice, library in (
        ("dilated conv, input gradient by the forward kernel", "input_grad_by_forward", "backward-data"),
        ("dilated conv, weight gradient as width-tap GEMMs", "weight_grad_by_taps", "backward-weights"),
    ):
        median, q1, q3 = paired_speedup(
            lambda: conv(x),
            lambda choice=choice: with_library_kernel(choice, conv, x),
            [x, conv.weight, conv.bias],
            repeats,
        )
        detail = f"against oneDNN's {library} kernel, the other gradients unchanged; {where}"
        out.append(_row(name, median, q1, q3, detail, repeats))
    return out


def with_library_kernel(choice: str, conv: CausalConv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` with one of the model's kernel choices switched back to oneDNN's (for its backward too)."""
    with cpu_kernel_choice(**{choice: False}):
        return conv(x)


def _row(name: str, median: float, q1: float, q3: float, detail: str, repeats: int) -> dict:
    return {
        "benchmark": f"CPU kernel: {name}",
        "value": median,
        "unit": "x (>1: ours faster)",
        "detail": f"{detail}; forward + backward, median of {repeats} interleaved pairs, interquartile "
        f"{q1:.2f}-{q3:.2f}",
    }
