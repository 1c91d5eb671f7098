"""Compute per second of audio: FLOPs of synthesis, of the density pass, and of a training step.

The primary count is PyTorch's aten-level ``torch.utils.flop_counter.FlopCounterMode``, run on the
``meta`` device (shapes only, no memory, no arithmetic). It sees every convolution and matrix
product that runs, including the ``convolution_backward`` kernels of a training step, so a step's
FLOPs are **counted** (forward + backward), not assumed to be "backward = 2 x forward".

``thop`` (PyTorch-OpCounter, the tool the paper names) is kept as a cross-check column on the
forward pass, with custom rules for the WaveFlow modules it does not know: weight-normalised
convolutions are dynamically created ``Parametrized*`` classes that thop would silently count as
zero, and thop's rule for transposed convolutions counts *output* positions (16x too many for the
mel upsampler) where the work is ``input positions x out_channels x kernel``. The two agree within
2 % (tested). Both count convolutions and matrix products only (elementwise gates, exp and adds are
a few percent more and are not included; nor is the optimiser's elementwise update).

Conventions: FLOPs = 2 x MACs. Counting runs on ``COUNT_SAMPLES = 256 * 86`` samples (a multiple of
every supported h and of the hop) and is scaled to one second at 22,050 Hz; the only per-frame
term, the mel upsampler, is < 0.2 % of the total, so the scaling error is far below the 2 %
agreement we test.

Directions: ``density`` is one parallel pass of the flow (the forward half of a training step);
``training`` is a whole step's forward and backward (the loss ``-log_likelihood`` and its gradient
with respect to every parameter); ``synthesis`` is the cached row-by-row inverse of
:mod:`waveflow.model.synthesis`, which does the density pass's convolution work over h - 1 row steps
as plain matrix products (thop's module hooks cannot see those, so its cross-check for synthesis is
thop's count of the density pass, which does the same products on the same h - 1 input rows).

Any other model: :func:`count_flops` counts the FLOPs of any ``nn.Module`` or callable at given
inputs with the same FlopCounterMode (forward only, or forward + backward of a loss), on the inputs'
own device or on ``meta``; :func:`flops_per_audio_second` divides by the seconds of audio the inputs
stand for, whatever their sample rate. They are how a model that is not WaveFlow gets the compute
axis of the paper's comparison.
"""

from __future__ import annotations

import argparse
import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    import pandas as pd

from ..audio import HOP_LENGTH, SAMPLE_RATE
from ..model import PAPER_CONFIGS, FastSynthesizer, WaveFlow, WaveFlowConfig, get_config

COUNT_SAMPLES = HOP_LENGTH * 86  # 22,016 samples, about one second
DIRECTIONS = ("density", "synthesis", "training")


def count_conv_transpose(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    """thop rule for ConvTranspose: each input position scatters into out_channels x kernel outputs."""
    x = inputs[0]
    kernel = math.prod(module.weight.shape[2:])
    module.total_ops += torch.DoubleTensor([x.numel() * (module.out_channels // module.groups) * kernel])


def thop_rules(module: nn.Module) -> dict[type, object]:
    """Custom thop rules for every convolution class present, parametrised ones included."""
    from thop.vision.basic_hooks import count_convNd  # thop is the [paper] extra: imported when cross-checking

    rules: dict[type, object] = {}
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            rules[type(m)] = count_conv_transpose
        elif isinstance(m, nn.modules.conv._ConvNd) and type(m) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            # thop matches classes exactly: a subclass (CausalConv2d) or a parametrised (weight-normed)
            # class would otherwise be skipped without a word
            rules[type(m)] = count_convNd
    return rules


def thop_macs(module: nn.Module, inputs: tuple) -> float:
    """MACs of ``module(*inputs)`` counted by thop with the WaveFlow rules."""
    import thop

    macs, _ = thop.profile(module, inputs=inputs, custom_ops=thop_rules(module), verbose=False)
    return float(macs)


def aten_flops(module: nn.Module, inputs: tuple) -> float:
    """FLOPs of ``module(*inputs)`` counted by PyTorch's aten-level FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return float(counter.get_total_flops())


def aten_training_flops(model: WaveFlow, audio: torch.Tensor, mel: torch.Tensor) -> tuple[float, float]:
    """``(forward, forward + backward)`` FLOPs of one training step, counted by FlopCounterMode.

    The step is the loss ``-model.log_likelihood(audio, mel)`` and its ``backward()`` into every
    parameter, as :func:`waveflow.train.train` runs it; the input audio needs no gradient, so the
    first layer's input-gradient is (correctly) not counted.
    """
    with FlopCounterMode(display=False) as counter:
        loss = -model.log_likelihood(audio, mel)
        forward = float(counter.get_total_flops())
        loss.backward()
    return forward, float(counter.get_total_flops())


# ----------------------------------------------------------------------------------------------
# any model
def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor inside tuples, lists and dicts (others kept)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        mapped = [_map_tensors(v, fn) for v in value]
        return type(value)(*mapped) if hasattr(value, "_fields") else type(value)(mapped)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor inside ``value`` (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _to_meta(t: torch.Tensor) -> torch.Tensor:
    """A meta tensor of ``t``'s shape and dtype: a new leaf, requiring grad where ``t`` does, so a
    backward on meta ends in it instead of trying to reach the real tensor."""
    return t.detach().to("meta").requires_grad_(t.requires_grad)


def _loss_of(output: Any) -> torch.Tensor:
    """What ``backward=True`` differentiates: a scalar output as it is, otherwise the ``.sum()`` of every
    floating-point tensor in the output (a sum adds no counted FLOPs and reaches every element)."""
    tensors = [t for t in _tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise ValueError(
            "count_flops: backward=True, but the output depends on no tensor that requires grad; expected a "
            "module with trainable parameters or inputs with requires_grad=True"
        )
    if len(tensors) == 1 and tensors[0].numel() == 1:
        return tensors[0].reshape(())
    return functools.reduce(torch.add, (t.sum() for t in tensors))


def _name(model_or_fn: Any) -> str:
    return type(model_or_fn).__name__ if isinstance(model_or_fn, nn.Module) else getattr(model_or_fn, "__name__", "fn")


def _is_meta(device: str | torch.device | None) -> bool:
    if device is None:
        return False
    try:
        return torch.device(device).type == "meta"
    except (RuntimeError, TypeError):  # not a device name at all
        return False


def _run(fn: Callable[..., Any], args: tuple, kwargs: dict, model_or_fn: Any, meta: bool) -> Any:
    """``fn(*args, **kwargs)``; on meta, a failure says that the model cannot be counted there and why."""
    if not meta:
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise RuntimeError(
            f"count_flops: {_name(model_or_fn)} cannot run on the meta device ({reason}); it reads tensor "
            "values or makes tensors on a fixed device: count it with device=None on real inputs"
        ) from exc


def count_flops(
    model_or_fn: nn.Module | Callable[..., Any],
    *inputs: Any,
    backward: bool = False,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> float:
    """FLOPs of ``model_or_fn(*inputs, **kwargs)``, counted by PyTorch's aten-level FlopCounterMode.

    The count is what the operators that ran report (2 x MACs for convolutions and matrix
    products, attention included; elementwise work is not counted), so it applies to any model
    without rules written for it, and it depends only on the shapes: counting a batch of one
    second of audio gives the compute of one second, whatever the model.

    Args:
        model_or_fn: an ``nn.Module`` or any callable (a closure over a model, a training-step function).
        *inputs: positional arguments of the call; tensors may sit inside tuples, lists and dicts.
        backward: ``False`` (default) counts one forward under ``torch.no_grad()``. ``True`` counts the
            forward with autograd on and the backward of the returned scalar loss, or of the ``.sum()``
            of the output when it is not a scalar (the gradient work of a training step). For a module
            on real tensors, its parameters' ``.grad`` are restored afterwards; a plain callable's
            leaves accumulate gradients as a training step would.
        device: ``None`` (default) counts where the model and inputs are. ``"meta"`` counts on the
            meta device: tensor inputs and a module's parameters and buffers are replaced by meta
            tensors of the same shapes (the module itself is not changed), so nothing is allocated
            or computed: a model larger than the machine's memory can be counted. A plain callable has only its tensor
            inputs moved. A model that reads values (``.item()``, data-dependent shapes) or makes
            tensors on a fixed device cannot run on meta: that is a ``RuntimeError`` that says so
            and suggests ``device=None``.
        **kwargs: keyword arguments of the call (moved to meta like ``inputs``).

    Returns:
        The total FLOPs of the call (forward, or forward + backward).

    Raises:
        ValueError: ``device`` other than ``None`` or ``"meta"``; ``backward=True`` with nothing to
            differentiate.
        RuntimeError: the model cannot run on the meta device.
    """
    if not callable(model_or_fn):
        raise ValueError(f"count_flops: expected an nn.Module or a callable, got {type(model_or_fn).__name__}")
    meta = _is_meta(device)
    if device is not None and not meta:
        raise ValueError(
            f"count_flops: device={device!r}; expected None (count where the model and inputs are) or 'meta' "
            "(shapes only)"
        )
    call: Callable[..., Any] = model_or_fn
    if meta:
        inputs = _map_tensors(inputs, _to_meta)
        kwargs = _map_tensors(kwargs, _to_meta)
        if isinstance(model_or_fn, nn.Module):
            state = {k: _to_meta(v) for k, v in model_or_fn.named_parameters()}
            state.update({k: _to_meta(v) for k, v in model_or_fn.named_buffers()})

            def call(*args: Any, **kw: Any) -> Any:
                return functional_call(model_or_fn, state, args, kw)

    keep_grads = backward and not meta and isinstance(model_or_fn, nn.Module)
    saved = [(p, p.grad) for p in model_or_fn.parameters()] if keep_grads else []
    try:
        with FlopCounterMode(display=False) as counter:
            if backward:
                with torch.enable_grad():
                    output = _run(call, inputs, kwargs, model_or_fn, meta)
                    loss = _loss_of(output)
                    _run(loss.backward, (), {}, model_or_fn, meta)
            else:
                with torch.no_grad():
                    _run(call, inputs, kwargs, model_or_fn, meta)
    finally:
        for p, grad in saved:
            p.grad = grad
    return float(counter.get_total_flops())


def flops_per_audio_second(
    model_or_fn: nn.Module | Callable[..., Any],
    *inputs: Any,
    audio_seconds: float,
    backward: bool = False,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> float:
    """:func:`count_flops` of a call whose inputs stand for ``audio_seconds`` of audio, per second.

    The compute axis of a model comparison: for a vocoder, inputs of ``n`` samples at ``sr`` Hz
    stand for ``n / sr`` seconds (``n`` samples times a batch of ``b`` clips: ``b * n / sr``), so
    models at different sample rates compare on the same footing. A model whose cost has a fixed
    part (a per-clip encoder) is best counted on inputs of about a second or more.

    Raises:
        ValueError: ``audio_seconds`` not a finite number > 0 (and as :func:`count_flops`).
    """
    if isinstance(audio_seconds, bool) or not isinstance(audio_seconds, numbers.Real):
        raise ValueError(f"flops_per_audio_second: audio_seconds={audio_seconds!r}; expected a number of seconds > 0")
    if not (math.isfinite(audio_seconds) and audio_seconds > 0):
        raise ValueError(f"flops_per_audio_second: audio_seconds={audio_seconds!r}; expected a finite number > 0")
    return count_flops(model_or_fn, *inputs, backward=backward, device=device, **kwargs) / audio_seconds


@dataclass(frozen=True)
class FlopCount:
    """Compute of one configuration in one direction, per second of 22.05 kHz audio.

    Args:
        config: the configuration counted.
        direction: ``density``, ``training`` or ``synthesis``.
        flops_per_audio_second: FlopCounterMode's count of the whole direction (the primary count;
            forward + backward for ``training``).
        forward_flops_per_audio_second: FlopCounterMode's count of the forward pass alone (equal to
            the above except for ``training``).
        macs_per_audio_second: thop's multiply-accumulates of the forward pass (the paper-named
            cross-check).
    """

    config: str
    direction: str
    flops_per_audio_second: float
    forward_flops_per_audio_second: float
    macs_per_audio_second: float

    @property
    def thop_flops_per_audio_second(self) -> float:
        """thop's forward FLOPs (2 x MACs)."""
        return 2 * self.macs_per_audio_second

    @property
    def relative_difference(self) -> float:
        """|thop - FlopCounterMode| / FlopCounterMode on the forward pass, the cross-check (tested <= 2 %)."""
        fwd = self.forward_flops_per_audio_second
        return abs(self.thop_flops_per_audio_second - fwd) / fwd

    @property
    def backward_to_forward(self) -> float:
        """Counted backward FLOPs / forward FLOPs (0 outside ``training``)."""
        fwd = self.forward_flops_per_audio_second
        return (self.flops_per_audio_second - fwd) / fwd


def count(config: WaveFlowConfig, direction: str, name: str = "custom") -> FlopCount:
    """Count FLOPs per audio second for ``config`` in ``direction`` (shapes only, no compute; cached)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"flops: direction {direction!r} unknown; expected one of {DIRECTIONS}")
    if COUNT_SAMPLES % config.n_height:
        raise ValueError(f"flops: h={config.n_height} does not divide the {COUNT_SAMPLES}-sample count window")
    total, forward, macs = _count(config, direction)
    return FlopCount(name, direction, total, forward, macs)


@functools.lru_cache(maxsize=64)
def _count(config: WaveFlowConfig, direction: str) -> tuple[float, float, float]:
    """``(FLOPs, forward FLOPs, thop forward MACs)`` per audio second; cached because counting a
    paper-size model takes seconds and E_gen, the batch sweep and E_train ask for the same counts.

    The model is built with plain weights: weight norm adds only element-wise work, which neither
    counter counts (the counts are equal, ``tests/test_flops.py``), and its ~400 norms cost seconds
    of Python per build on meta.
    """
    with torch.device("meta"):  # build on meta: no memory, no arithmetic
        model = WaveFlow(config, weight_norm=False).train(direction == "training")
    audio = torch.zeros(1, COUNT_SAMPLES, device="meta")
    mel = torch.zeros(1, config.n_mels, COUNT_SAMPLES // HOP_LENGTH + 1, device="meta")
    inputs = (mel, 1.0, audio) if direction == "synthesis" else (audio, mel)
    scale = SAMPLE_RATE / COUNT_SAMPLES
    if direction == "training":
        forward, total = aten_training_flops(model, audio, mel)
        with torch.no_grad():  # thop's forward only; the graph is not needed
            macs = thop_macs(model.eval(), inputs)
    else:
        with torch.no_grad():
            total = forward = aten_flops(model, inputs) if direction == "density" else _synthesis_flops(config, inputs)
            # Outside the meta context: thop keeps its counters in CPU buffers it reads with .item().
            # For synthesis: the row loop multiplies plain matrices, which thop's module hooks cannot
            # see; it does the density pass's coupling-network work (rows 0..h-2 as input) and one
            # upsampling, so thop counts the density pass.
            macs = thop_macs(model, (audio, mel))
    return total * scale, forward * scale, macs * scale


def _synthesis_flops(config: WaveFlowConfig, inputs: tuple) -> float:
    """FlopCounterMode's count of :class:`FastSynthesizer` on ``inputs``, from one- and two-flow builds.

    On meta each of the row loop's ~30,000 products per paper-size model costs about a millisecond
    of Python (the counter's dispatch and addmm's meta decomposition), so the whole loop is not run
    n_flows times. The flows of a config are copies of one coupling network, so the count is
    ``upsampling + n_flows x flow``, exactly: ``c1 + (n_flows - 1) (c2 - c1)`` with ``c1``, ``c2``
    the counts of the same synthesis with one and with two flows (``tests/test_flops.py`` checks
    this against running every flow).
    """

    def flops(n_flows: int) -> float:
        with torch.device("meta"):
            synth = FastSynthesizer(WaveFlow(replace(config, n_flows=n_flows), weight_norm=False))
        return aten_flops(synth, inputs)

    one = flops(1)
    return one if config.n_flows == 1 else one + (config.n_flows - 1) * (flops(2) - one)


def flops_table(
    configs: dict[str, WaveFlowConfig] | None = None, directions: tuple[str, ...] = DIRECTIONS
) -> pd.DataFrame:
    """One row per (config, direction): FlopCounterMode FLOPs (primary), forward part, thop cross-check."""
    configs = PAPER_CONFIGS if configs is None else configs
    rows = []
    for name, cfg in configs.items():
        for direction in directions:
            c = count(cfg, direction, name)
            rows.append(
                {
                    **asdict(c),
                    "thop_flops_per_audio_second": c.thop_flops_per_audio_second,
                    "relative_difference": c.relative_difference,
                    "backward_to_forward": c.backward_to_forward,
                }
            )
    import pandas as pd  # the [analysis] extra: counting FLOPs needs only torch

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
        help="density (forward pass), training (forward + backward of a step) and/or synthesis (default: all)",
    )


CSV_COLUMNS = (
    "config",
    "direction",
    "flops_per_audio_second",
    "forward_flops_per_audio_second",
    "thop_flops_per_audio_second",
    "macs_per_audio_second",
)


def run(args: argparse.Namespace) -> int:
    """Print FLOPs per second of audio (FlopCounterMode) with thop's forward count beside them."""
    names = args.config or list(PAPER_CONFIGS)
    configs = {n.upper(): get_config(n) for n in names}
    table = flops_table(configs, tuple(args.direction))
    if args.format == "csv":
        print(table[list(CSV_COLUMNS)].to_csv(index=False, float_format="%.0f"), end="")
        return 0
    print(
        f"{'config':<7}{'direction':<11}{'GFLOP/s audio':>15}{'forward':>10}{'bwd/fwd':>9}{'thop fwd':>10}{'diff':>8}"
    )
    for row in table.itertuples():
        ratio = f"{row.backward_to_forward:.3f}" if row.direction == "training" else "-"
        print(
            f"{row.config:<7}{row.direction:<11}{row.flops_per_audio_second / 1e9:>15.2f}"
            f"{row.forward_flops_per_audio_second / 1e9:>10.2f}{ratio:>9}"
            f"{row.thop_flops_per_audio_second / 1e9:>10.2f}{100 * row.relative_difference:>7.2f}%"
        )
    print(
        "GFLOP per second of 22.05 kHz audio counted with torch FlopCounterMode (training = forward + backward "
        "of one step); convolutions and matmuls only; thop's forward count (2 x MACs) as the cross-check."
    )
    return 0
