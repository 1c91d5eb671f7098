"""Where the time goes: per-op tables of a fast synthesis and of a training step (``torch.profiler``).

``make bench-breakdown`` (``python -m waveflow bench --breakdown``) profiles one fast synthesis per
configuration and one WaveFlow training step, and writes, under ``build/results/``:

* ``breakdown_synthesis_<config>.csv`` and ``breakdown_training_<config>.csv``: one row per op and
  input shapes, with its calls, its own time (``self`` time: children excluded), its share of the
  profiled wall time, for the matrix products it runs (``addmm``, ``mm``, ``bmm``, ``baddbmm``)
  the GEMM shape, and for those and oneDNN's convolution kernels (forward, and backward per
  gradient) the GFLOP/s that op reached;
* ``breakdown.csv``: the same time summed by kind (:data:`KINDS`: matrix products and
  convolutions, element-wise, copies and fills, other ops), plus the time outside every op
  (Python, dispatch and the profiler's own bookkeeping) and the wall time without the profiler.

The breakdowns written into :mod:`waveflow.model.synthesis` and :func:`waveflow.perf.bench.training_vs_peak`
come from these tables; on another machine (the other CPU family) this command gives its own.
On a GPU, :func:`gpu_busy` gives the share of a synthesis the GPU spends in kernels, which
``make gpu-check`` reports for the eager and the CUDA-graph fast paths.

Caveats, since it is a profile and not a benchmark: the profiler adds a few microseconds to every
op, so the profiled wall time exceeds the plain one (both are in ``breakdown.csv``) and the
outside-op share is an upper bound; GEMM rates of single calls are as noisy as the machine; the
matrix-product kind's rate uses the FLOPs :mod:`waveflow.measures.flops` counts for the whole work (every
convolution and product, gradients included), so it reads as that kind's average throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from ..analysis import save_table
from ..measures.flops import count
from ..model import get_config
from .workloads import synthesis_workload, training_workload

#: Op kinds of the summary; an aten op not named here is "other ops". Names are matched after the
#: ``aten::`` prefix and any trailing underscore (``sigmoid_`` is ``sigmoid``).
KINDS: dict[str, frozenset[str]] = {
    "matrix products and convolutions": frozenset(
        {
            "addmm",
            "mm",
            "bmm",
            "baddbmm",
            "mkldnn_convolution",
            "convolution_backward",
            "_slow_conv2d_forward",
            "_slow_conv2d_backward",
            "thnn_conv2d",
            "mkldnn_convolution_backward",
            "cudnn_convolution",
        }
    ),
    "element-wise": frozenset(
        {
            "sigmoid",
            "tanh",
            "mul",
            "add",
            "sub",
            "div",
            "exp",
            "neg",
            "log",
            "addcmul",
            "addcdiv",
            "sqrt",
            "lerp",
            "sigmoid_backward",
            "tanh_backward",
            "leaky_relu",
            "leaky_relu_backward",
            "pow",
            "sum",
            "mean",
            "_foreach_add",
            "_foreach_mul",
            "_foreach_lerp",
            "_foreach_addcmul",
            "_foreach_addcdiv",
            "_foreach_sqrt",
            "_foreach_div",
        }
    ),
    "copies and fills": frozenset(
        {
            "copy",
            "fill",
            "zero",
            "zeros",
            "zeros_like",
            "cat",
            "clone",
            "contiguous",
            "constant_pad_nd",
            "_to_copy",
            "to",
            "index",
            "index_select",
            "stack",
            "flip",
            "empty_like",
            "resize",
        }
    ),
}
OUTSIDE = "outside ops (Python, dispatch, profiler)"


def kind_of(op: str) -> str:
    """The :data:`KINDS` entry of an op name such as ``aten::sigmoid_``, or ``"other ops"``."""
    name = op.removeprefix("aten::").rstrip("_")
    for kind, names in KINDS.items():
        if name in names:
            return kind
    return "other ops"


def gemm_shape(op: str, shapes: list[list[int]]) -> tuple[int, int, int, int] | None:
    """``(batch, M, K, N)`` of a matrix-product op from the profiler's input shapes, else ``None``.

    ``addmm(bias, A, B)``: A is (M, K), B (K, N); ``baddbmm(C, A, B)`` and ``bmm(A, B)`` are batched
    the same way; ``mm(A, B)`` has no bias.
    """
    name = op.removeprefix("aten::").rstrip("_")
    try:
        if name == "addmm":
            (m, k), (_, n) = shapes[1], shapes[2]
            return 1, m, k, n
        if name == "mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return 1, m, k, n
        if name == "baddbmm":
            (b, m, k), (_, _, n) = shapes[1], shapes[2]
            return b, m, k, n
        if name == "bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return b, m, k, n
    except (IndexError, TypeError, ValueError):
        return None  # an overload with other arguments: no shape rather than a wrong one
    return None


def conv_flops(op: str, shapes: list[list[int]], args: list[Any] | None) -> float | None:
    """FLOPs of one 2-D convolution kernel call from its input shapes and scalar arguments, else ``None``.

    ``mkldnn_convolution(x, w, b, padding, stride, dilation, groups)`` does ``2 N O H_o W_o (C/g) k_h
    k_w``; ``convolution_backward(grad, x, w, bias_sizes, stride, padding, dilation, transposed,
    output_padding, groups, mask)`` the same per gradient it computes (input and weight; the bias
    gradient is a sum), with ``H_o x W_o`` read from the gradient's shape.
    """
    name = op.removeprefix("aten::")
    try:
        if name == "mkldnn_convolution" and args:
            (n, _, h, w), (o, c, kh, kw) = shapes[0], shapes[1]
            (ph, pw), (sh, sw), (dh, dw) = args[3], args[4], args[5]
            ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            return 2.0 * n * o * ho * wo * c * kh * kw
        if name == "convolution_backward" and args:
            (n, o, ho, wo), (_, c, kh, kw) = shapes[0], shapes[2]
            mask = args[10]
            return 2.0 * n * o * ho * wo * c * kh * kw * (int(bool(mask[0])) + int(bool(mask[1])))
    except (IndexError, TypeError, ValueError):
        return None  # another overload or unrecorded arguments: no count rather than a wrong one
    return None


def _conv_flops_by_shape(prof: profile) -> dict[tuple[str, str], float]:
    """Convolution FLOPs summed per (op, input shapes), the grouping of ``key_averages``: the
    scalar arguments a count needs (dilation, gradient mask) are on the single events only."""
    totals: dict[tuple[str, str], float] = {}
    for event in prof.events():
        if event.name in ("aten::mkldnn_convolution", "aten::convolution_backward"):
            flops = conv_flops(event.name, event.input_shapes, getattr(event, "concrete_inputs", None))
            if flops is not None:
                key = (event.name, str(event.input_shapes))
                totals[key] = totals.get(key, 0.0) + flops
    return totals


def op_table(prof: profile, wall_s: float) -> pd.DataFrame:
    """One row per (op, input shapes) of a finished CPU profile, the slowest first.

    Columns: ``op``, ``kind``, ``shapes`` (as the profiler records them), ``gemm`` ("B x M x K x N"
    for matrix products), ``calls``, ``self_s`` (time in the op itself), ``share`` (of ``wall_s``),
    ``us_per_call`` and ``gflop_s``: for matrix products 2 B M K N per call, for oneDNN's
    convolution kernels :func:`conv_flops`, over the self time.
    """
    convs = _conv_flops_by_shape(prof)
    rows = []
    for event in prof.key_averages(group_by_input_shape=True):
        if not event.key.startswith("aten::"):
            continue  # profiler bookkeeping and record_function ranges: their ops are listed themselves
        self_s = event.self_cpu_time_total / 1e6
        shape = gemm_shape(event.key, event.input_shapes)
        gflop_s = float("nan")
        if shape is not None and self_s > 0:
            b, m, k, n = shape
            gflop_s = 2.0 * b * m * k * n * event.count / self_s / 1e9
        elif (event.key, str(event.input_shapes)) in convs and self_s > 0:
            gflop_s = convs[event.key, str(event.input_shapes)] / self_s / 1e9
        rows.append(
            {
                "op": event.key,
                "kind": kind_of(event.key),
                "shapes": str(event.input_shapes),
                "gemm": " x ".join(map(str, shape)) if shape else "",
                "calls": event.count,
                "self_s": self_s,
                "share": self_s / wall_s,
                "us_per_call": 1e6 * self_s / max(event.count, 1),
                "gflop_s": gflop_s,
            }
        )
    table = pd.DataFrame(rows)
    return table.sort_values("self_s", ascending=False, ignore_index=True) if len(table) else table


def by_op(table: pd.DataFrame) -> pd.DataFrame:
    """An :func:`op_table` summed over input shapes that differ only outside a GEMM's shape (a
    training step's convolutions come in a shape per layer): one row per op and GEMM shape, the
    slowest first, its ``gflop_s`` the FLOPs of the merged rows over their time."""
    if not len(table):
        return table
    flops = (table["gflop_s"].fillna(0.0) * table["self_s"]).rename("flops")
    grouped = table.assign(flops=flops).groupby(["op", "kind", "gemm"], as_index=False, dropna=False)
    merged = grouped[["calls", "self_s", "share", "flops"]].sum()
    merged["gflop_s"] = (merged["flops"] / merged["self_s"].clip(lower=1e-12)).where(merged["flops"] > 0)
    return merged.drop(columns="flops").sort_values("self_s", ascending=False, ignore_index=True)


def kind_summary(table: pd.DataFrame, wall_s: float, plain_s: float, flops: float) -> pd.DataFrame:
    """Time per kind, with what lies outside every op, from an :func:`op_table` of ``wall_s``.

    ``plain_s`` is the same work's wall time without the profiler; ``flops`` what :mod:`waveflow.measures.flops`
    counts for it, divided by the matrix-product time for that kind's ``gflop_s``.
    """
    by_kind = table.groupby("kind")[["self_s", "calls"]].sum() if len(table) else pd.DataFrame()
    rows = []
    for kind in [*KINDS, "other ops"]:
        seconds = float(by_kind["self_s"].get(kind, 0.0)) if len(by_kind) else 0.0
        calls = int(by_kind["calls"].get(kind, 0)) if len(by_kind) else 0
        rows.append({"kind": kind, "seconds": seconds, "calls": calls})
    inside = sum(r["seconds"] for r in rows)
    rows.append({"kind": OUTSIDE, "seconds": max(wall_s - inside, 0.0), "calls": 0})
    summary = pd.DataFrame(rows)
    summary["share"] = summary["seconds"] / wall_s
    products = summary["kind"] == "matrix products and convolutions"
    summary["gflop_s"] = float("nan")
    summary.loc[products, "gflop_s"] = flops / summary.loc[products, "seconds"].clip(lower=1e-12) / 1e9
    summary["profiled_wall_s"], summary["plain_wall_s"] = wall_s, plain_s
    return summary


def profile_work(work: Callable[[], object], flops: float, repeats: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(op table, kind summary)`` of one call of ``work`` under the profiler, after ``repeats``
    plain calls (the first also a warm-up; the best of them is the plain wall time)."""
    plain = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        work()
        plain.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        work()
        wall = time.perf_counter() - t
    table = op_table(prof, wall)
    return table, kind_summary(table, wall, min(plain), flops)


def device_seconds(events: Iterable[Any]) -> float:
    """Seconds the device spent in kernels, summed over a profile's ``key_averages()``: each event's
    own device time (``self_device_time_total``, ``self_cuda_time_total`` before torch 2.4)."""
    total_us = 0.0
    for event in events:
        total_us += getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0) or 0.0
    return total_us / 1e6


def gpu_busy(work: Callable[[], object]) -> tuple[float, float]:
    """``(kernel seconds, wall seconds)`` of one call of ``work`` on the current CUDA device, from
    ``torch.profiler``'s CUDA activity. Their ratio is how busy the GPU was: well below 1, the
    work is bound by kernel launches and Python dispatch rather than by the GPU's arithmetic (what
    CUDA graphs remove). ``work`` is called once before, unprofiled (warm-up, graph capture)."""
    work()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        work()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    return device_seconds(prof.key_averages()), wall


def synthesis_breakdown(config: str, seconds: float = 1.0, batch: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`profile_work` of one fast synthesis of ``seconds`` of audio (the bench's workload)."""
    cfg = get_config(config)
    work = synthesis_workload(cfg, seconds, batch)
    return profile_work(work.run, count(cfg, "synthesis", config).flops_per_audio_second * work.audio_s)


def training_breakdown(config: str, batch: int = 2, segment: int = 16_000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`profile_work` of one training step (forward, backward, Adam) at ``batch x segment``, the bench's step."""
    cfg = get_config(config)
    work = training_workload(cfg, batch, segment)
    return profile_work(work.step, count(cfg, "training", config).flops_per_audio_second * work.audio_s)


def write_breakdowns(
    configs: tuple[str, ...],
    train_config: str | None,
    seconds: float = 1.0,
    batch: int = 1,
    segment: int = 16_000,
    peak_gflop_s: float | None = None,
) -> tuple[pd.DataFrame, dict[tuple[str, str], pd.DataFrame]]:
    """Profile each configuration's synthesis and ``train_config``'s training step, write the op
    tables and ``breakdown.csv`` (see the module docstring) and return them: ``(summary, {(work,
    config): op table})``. ``peak_gflop_s``, when given, adds each kind's ``gflop_s`` as a fraction
    of it (``of_peak``)."""
    parts = [("synthesis", c, lambda c=c: synthesis_breakdown(c, seconds, batch)) for c in configs]
    if train_config:
        parts.append(("training", train_config, lambda: training_breakdown(train_config, 2, segment)))
    summaries, tables = [], {}
    for what, config, run in parts:
        table, summary = run()
        save_table(table, f"breakdown_{what}_{config}")
        summaries.append(summary.assign(work=what, config=config))
        tables[what, config] = table
    result = pd.concat(summaries, ignore_index=True)
    result = result[["work", "config", *[c for c in result.columns if c not in ("work", "config")]]]
    if peak_gflop_s:
        result["of_peak"] = result["gflop_s"] / peak_gflop_s
    save_table(result, "breakdown")
    return result, tables
