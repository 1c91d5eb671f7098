"""Compute per second of audio: multiply-accumulates (MACs) and FLOPs of each configuration.

Counted with ``thop`` (PyTorch-OpCounter, the tool the paper names) plus custom rules for the
WaveFlow modules thop does not know: weight-normalised convolutions are dynamically created
``Parametrized*`` classes that thop would silently count as zero, and thop's rule for transposed
convolutions counts *output* positions (16x too many for the mel upsampler) where the work is
``input positions x out_channels x kernel``. The count is cross-checked against PyTorch's
aten-level ``torch.utils.flop_counter.FlopCounterMode``; both count convolutions and matrix
products only (elementwise gates, exp and adds are a few percent more and are not included).

Conventions: FLOPs = 2 x MACs. Counting runs on the ``meta`` device (shapes only, no arithmetic),
on ``COUNT_SAMPLES = 256 * 86`` samples (a multiple of every supported h and of the hop), and is
scaled to one second at 22,050 Hz; the only per-frame term, the mel upsampler, is < 0.2 % of the
total, so the scaling error is far below the 2 % agreement we test.

Directions: ``density`` is one parallel pass of the flow (the forward half of a training step;
a backward pass costs about twice that again); ``synthesis`` is the cached row-by-row inverse of
:mod:`waveflow.synthesis`, which does the same convolution work spread over h - 1 row steps.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass

import pandas as pd
import thop
import torch
from thop.vision.basic_hooks import count_convNd
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from .audio import HOP_LENGTH, SAMPLE_RATE
from .model import PAPER_CONFIGS, FastSynthesizer, WaveFlow, WaveFlowConfig, get_config

COUNT_SAMPLES = HOP_LENGTH * 86  # 22,016 samples, about one second
DIRECTIONS = ("density", "synthesis")


def count_conv_transpose(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    """thop rule for ConvTranspose: each input position scatters into out_channels x kernel outputs."""
    x = inputs[0]
    kernel = math.prod(module.weight.shape[2:])
    module.total_ops += torch.DoubleTensor([x.numel() * (module.out_channels // module.groups) * kernel])


def thop_rules(module: nn.Module) -> dict[type, object]:
    """Custom thop rules for every convolution class present, parametrised ones included."""
    rules: dict[type, object] = {}
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            rules[type(m)] = count_conv_transpose
        elif isinstance(m, nn.modules.conv._ConvNd) and parametrize.is_parametrized(m):
            rules[type(m)] = count_convNd
    return rules


def thop_macs(module: nn.Module, inputs: tuple) -> float:
    """MACs of ``module(*inputs)`` counted by thop with the WaveFlow rules."""
    macs, _ = thop.profile(module, inputs=inputs, custom_ops=thop_rules(module), verbose=False)
    return float(macs)


def aten_flops(module: nn.Module, inputs: tuple) -> float:
    """FLOPs of ``module(*inputs)`` counted by PyTorch's aten-level FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class FlopCount:
    """Compute of one configuration in one direction, per second of 22.05 kHz audio."""

    config: str
    direction: str
    macs_per_audio_second: float
    flops_per_audio_second: float
    aten_flops_per_audio_second: float

    @property
    def relative_difference(self) -> float:
        """|thop - aten| / aten, the cross-check (tested <= 2 %)."""
        return abs(self.flops_per_audio_second - self.aten_flops_per_audio_second) / self.aten_flops_per_audio_second


def count(config: WaveFlowConfig, direction: str, name: str = "custom") -> FlopCount:
    """Count MACs/FLOPs per audio second for ``config`` in ``direction`` (shapes only, no compute)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"flops: direction {direction!r} unknown; expected one of {DIRECTIONS}")
    if COUNT_SAMPLES % config.n_height:
        raise ValueError(f"flops: h={config.n_height} does not divide the {COUNT_SAMPLES}-sample count window")
    with torch.device("meta"):  # build on meta: no memory, no arithmetic
        model = WaveFlow(config).eval()
        module = model if direction == "density" else FastSynthesizer(model)
    audio = torch.zeros(1, COUNT_SAMPLES, device="meta")
    mel = torch.zeros(1, config.n_mels, COUNT_SAMPLES // HOP_LENGTH + 1, device="meta")
    inputs = (audio, mel) if direction == "density" else (mel, 1.0, audio)
    # Outside the meta context: thop keeps its counters in CPU buffers it reads with .item().
    macs = thop_macs(module, inputs)
    reference = aten_flops(module, inputs)
    scale = SAMPLE_RATE / COUNT_SAMPLES
    return FlopCount(name, direction, macs * scale, 2 * macs * scale, reference * scale)


def flops_table(
    configs: dict[str, WaveFlowConfig] | None = None, directions: tuple[str, ...] = DIRECTIONS
) -> pd.DataFrame:
    """One row per (config, direction) with thop MACs/FLOPs and the aten cross-check."""
    configs = PAPER_CONFIGS if configs is None else configs
    rows = []
    for name, cfg in configs.items():
        for direction in directions:
            c = count(cfg, direction, name)
            rows.append({**asdict(c), "relative_difference": c.relative_difference})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``flops``."""
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (table)")
    parser.add_argument("--config", nargs="*", default=None, help="paper configs to count (default: WF1..WF5)")
    parser.add_argument(
        "--direction",
        choices=DIRECTIONS,
        nargs="*",
        default=list(DIRECTIONS),
        help="density (training direction) and/or synthesis (default: both)",
    )


def run(args: argparse.Namespace) -> int:
    """Print MACs and FLOPs per second of audio."""
    names = args.config or list(PAPER_CONFIGS)
    configs = {n.upper(): get_config(n) for n in names}
    table = flops_table(configs, tuple(args.direction))
    if args.format == "csv":
        cols = ["config", "direction", "macs_per_audio_second", "flops_per_audio_second"]
        print(table[cols].to_csv(index=False, float_format="%.0f"), end="")
        return 0
    print(f"{'config':<7}{'direction':<11}{'GMAC/s audio':>14}{'GFLOP/s audio':>15}{'aten GFLOP':>12}{'diff':>8}")
    for row in table.itertuples():
        print(
            f"{row.config:<7}{row.direction:<11}{row.macs_per_audio_second / 1e9:>14.2f}"
            f"{row.flops_per_audio_second / 1e9:>15.2f}{row.aten_flops_per_audio_second / 1e9:>12.2f}"
            f"{100 * row.relative_difference:>7.2f}%"
        )
    print(
        "Per second of 22.05 kHz audio; convolutions and matmuls only; FLOPs = 2 x MACs (thop), "
        "cross-checked against torch FlopCounterMode."
    )
    return 0
