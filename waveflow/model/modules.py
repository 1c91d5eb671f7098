"""Building blocks of WaveFlow: the mel upsampler and the 2-D WaveNet-like coupling network.

Every convolution except the zero-initialised output convolution is weight-normalised (one gain
``g`` per output channel). The gains are real parameters and are counted: with them, and with the
last residual layer producing skip channels only, the parameter counts equal the paper's
(5,916,372 for r=64; see ``tests/test_model.py``).

``weight_norm=False`` builds the same blocks with plain weights: the form inference folds the
model into (:func:`waveflow.model.fold_weight_norm`) and the one shape-only FLOP counting builds
on the meta device, where each of a model's ~400 norms costs milliseconds of Python and counts
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn.utils import parametrizations


def normed(conv: nn.Module, enabled: bool = True) -> nn.Module:
    """``conv`` with its weight reparametrised as ``g * v / ||v||`` (weight norm), or as it is."""
    return parametrizations.weight_norm(conv) if enabled else conv


class MelUpsampler(nn.Module):
    """Upsample a mel spectrogram in time by ``prod(scales)`` with transposed 2-D convolutions.

    Each block is a weight-normed ``ConvTranspose2d(1, 1, (3, 2s), stride=(1, s), padding=(1, s/2))``
    followed by LeakyReLU. Treating the spectrogram as a one-channel image lets the 3-tap kernel
    smooth across neighbouring mel bins while the time axis grows exactly ``s``-fold:
    ``(L - 1) s - s + 2 s = L s``.

    Args:
        scales: time stride of each block (default (16, 16), i.e. x256).
        leaky_slope: negative slope of the LeakyReLU (0.4).
        weight_norm: weight-normalise the convolutions (default; ``False``: plain weights).
    """

    def __init__(self, scales: tuple[int, ...] = (16, 16), leaky_slope: float = 0.4, weight_norm: bool = True) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.leaky_slope = leaky_slope
        self.convs = nn.ModuleList(
            normed(nn.ConvTranspose2d(1, 1, (3, 2 * s), stride=(1, s), padding=(1, s // 2)), weight_norm)
            for s in self.scales
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames)`` -> ``(batch, n_mels, frames * prod(scales))``."""
        x = mel.unsqueeze(1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), self.leaky_slope)
        return x.squeeze(1)


@dataclass
class CpuKernelChoice:
    """Which of its own kernels a dilated :class:`CausalConv2d` trains with on the CPU.

    Both replace a oneDNN kernel that ran far below the CPU's matmul peak on a 2-vCPU AMD EPYC
    (AVX2, torch 2.13); ``make bench`` times each against oneDNN's on the model's shapes ("CPU
    kernel: ..." rows, :mod:`waveflow.perf.cpu_kernels`), so a CPU family where one loses is seen at
    once and the default can be switched. Read when a convolution runs forward, so a backward pass
    uses the choice its forward pass was made under.
    """

    #: the input gradient as a forward convolution with the flipped kernel, not backward-data
    input_grad_by_forward: bool = True
    #: the weight gradient as one GEMM per kernel row over width-shifted copies, not backward-weights
    weight_grad_by_taps: bool = True


CPU_KERNELS = CpuKernelChoice()


@contextmanager
def cpu_kernel_choice(**choices: bool) -> Iterator[CpuKernelChoice]:
    """Set fields of :data:`CPU_KERNELS` within the block (the bench rows and tests compare both sides)."""
    old = replace(CPU_KERNELS)
    for name, value in choices.items():
        if not hasattr(old, name):
            raise ValueError(f"cpu_kernel_choice: no kernel choice {name!r}; expected one of {list(vars(old))}")
        setattr(CPU_KERNELS, name, value)
    try:
        yield CPU_KERNELS
    finally:
        for name, value in vars(old).items():
            setattr(CPU_KERNELS, name, value)


def weight_grad_by_taps(
    grad: torch.Tensor, padded: torch.Tensor, kernel_size: tuple[int, int], dilation: tuple[int, int]
) -> torch.Tensor:
    """Weight gradient of ``conv2d(padded, weight, dilation=dilation)`` from its output gradient.

    oneDNN's backward-weights kernel for *dilated* 3x3 convolutions ran at 67-90 GFLOP/s on the
    2-vCPU AMD EPYC (matmul peak ~180), a third of a WF2 training step; its forward kernel on the
    same shapes reaches 140-165. Here the ``k_w`` width taps of the padded input are copied side by
    side once (``(B, k_w * C_in, padded rows * W)``, a copy as large as ``k_w`` inputs), after which
    each kernel row ``i`` is one batched GEMM: the output gradient ``(C_out, rows * W)`` times the
    copy's rows ``i * d_h ... i * d_h + rows`` (a contiguous slice, no copy), giving every
    ``(output, input, tap)`` weight of that row at once. On WF2's shapes that ran at ~135 GFLOP/s
    including the copy with warm caches, 99-112 with the cache flushed between calls (oneDNN: 62-67
    then), and made whole WF2 training steps 1.045-1.086x faster (three runs of 8-12 interleaved
    pairs; WF4's, r = 128, 1.034x over 4 pairs). ``make bench``'s "weight gradient as width-tap
    GEMMs" row times it on this machine. Same FLOPs as the convolution's weight gradient:
    ``2 B C_out C_in k_h k_w rows W``.
    """
    batch, c_out, rows, width = grad.shape
    c_in, padded_rows = padded.shape[1], padded.shape[2]
    k_h, k_w = kernel_size
    d_h, d_w = dilation
    taps = padded.new_empty(batch, k_w, c_in, padded_rows, width)
    for j in range(k_w):
        taps[:, j] = padded[..., j * d_w : j * d_w + width]
    taps = taps.view(batch, k_w * c_in, padded_rows * width)
    flat = grad.reshape(batch, c_out, rows * width)
    per_row = grad.new_empty(k_h, batch, c_out, k_w * c_in)
    for i in range(k_h):
        start = i * d_h * width
        torch.bmm(flat, taps[:, :, start : start + rows * width].transpose(1, 2), out=per_row[i])
    return per_row.sum(1).view(k_h, c_out, k_w, c_in).permute(1, 3, 0, 2).contiguous()


class _DilatedConvOnCPU(torch.autograd.Function):
    """Causal dilated convolution whose gradients come from faster kernels than oneDNN's backward ones.

    Input gradient (``CPU_KERNELS.input_grad_by_forward``): oneDNN's backward-data kernel for a
    *dilated* 3x3 convolution runs at about 40 % of the CPU's matmul peak, while its forward
    kernel for the same shapes reaches 80-100 % (measured on AMD EPYC, torch 2.13; undilated
    kernels are fast both ways, so this path is used only when the dilation exceeds 1). The input
    gradient of a correlation is the correlation of the output gradient with the flipped,
    transposed kernel, so it can be computed by the fast forward kernel: with causal padding
    ``(p_w, p_w, p_h, 0)`` on the input, it is
    ``conv2d(pad(grad, (p_w, p_w, 0, p_h)), weight.transpose(0, 1).flip(2, 3))``.

    Weight gradient (``CPU_KERNELS.weight_grad_by_taps``): GEMMs over width-shifted copies of the
    input, see :func:`weight_grad_by_taps`. The bias gradient is the output gradient's sum.

    Same arithmetic, same FLOP count (FlopCounterMode sees a forward convolution instead of the
    backward-data one, and batched products instead of the backward-weights one), equal to the
    plain path within float rounding (``tests/test_model.py``). A choice that is off falls back to
    oneDNN's own backward kernel.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x, weight, bias, dilation: tuple[int, int], pad_w: int, pad_h: int):  # type: ignore[override]
        padded = F.pad(x, (pad_w, pad_w, pad_h, 0))
        ctx.save_for_backward(padded, weight)
        ctx.dilation, ctx.pads, ctx.has_bias = dilation, (pad_w, pad_h), bias is not None
        ctx.choice = replace(CPU_KERNELS)
        return F.conv2d(padded, weight, bias, dilation=dilation)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor):  # type: ignore[override]
        padded, weight = ctx.saved_tensors
        pad_w, pad_h = ctx.pads
        choice: CpuKernelChoice = ctx.choice
        grad = grad.contiguous()
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        grad_x = grad_w = grad_b = None
        if need_x and choice.input_grad_by_forward:
            flipped = weight.transpose(0, 1).flip(2, 3)
            grad_x = F.conv2d(F.pad(grad, (pad_w, pad_w, 0, pad_h)), flipped, dilation=ctx.dilation)
        if need_w and choice.weight_grad_by_taps:
            grad_w = weight_grad_by_taps(grad, padded, tuple(weight.shape[2:]), ctx.dilation)
            if need_b:
                grad_b = grad.sum((0, 2, 3))
        mask = [need_x and grad_x is None, need_w and grad_w is None, need_b and grad_b is None]
        if any(mask):
            bias_sizes = [weight.shape[0]] if ctx.has_bias else None
            grad_p, library_w, library_b = torch.ops.aten.convolution_backward(
                grad, padded, weight, bias_sizes, [1, 1], [0, 0], list(ctx.dilation), False, [0, 0], 1, mask
            )
            if mask[0]:  # the padded input's gradient, less the padding
                grad_x = grad_p[..., pad_h:, pad_w : grad_p.shape[-1] - pad_w]
            grad_w = library_w if mask[1] else grad_w
            grad_b = library_b if mask[2] else grad_b
        return grad_x, grad_w, grad_b, None, None, None


class CausalConv2d(nn.Conv2d):
    """A dilated ``Conv2d`` that pads its own input: causal along height (zeros above only, so
    output row i depends on rows i - (k-1) d_h ... i and never on a later one: the autoregressive
    property of the flow), 'same' along width (centred, non-causal).

    It is an ``nn.Conv2d`` (same parameters and state-dict keys, counted by thop's convolution
    rule); on the CPU (and on meta, where FLOPs are counted, so the count is the CPU path's) a
    dilated kernel trains through :class:`_DilatedConvOnCPU`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation_h: int, dilation_w: int) -> None:
        if kernel_size % 2 != 1:  # a centred ('same') width needs an odd kernel
            raise ValueError(f"CausalConv2d: kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=(dilation_h, dilation_w))

    @property
    def pad_h(self) -> int:
        """Rows of zeros above the input that make the height convolution causal."""
        return (self.kernel_size[0] - 1) * self.dilation[0]

    @property
    def pad_w(self) -> int:
        """Columns on each side that keep the width 'same'."""
        return (self.kernel_size[1] - 1) * self.dilation[1] // 2

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C_in, rows, W)`` -> ``(B, C_out, rows, W)``; ``bias``, if given, replaces the layer's
        own (:class:`ResidualLayer` passes the sum of its two biases, see there)."""
        bias = self.bias if bias is None else bias
        dilated = self.dilation[0] > 1 or self.dilation[1] > 1
        if dilated and x.device.type in ("cpu", "meta") and torch.is_grad_enabled():
            return _DilatedConvOnCPU.apply(x, self.weight, bias, self.dilation, self.pad_w, self.pad_h)
        padded = F.pad(x, (self.pad_w, self.pad_w, self.pad_h, 0))  # (left, right, top, bottom)
        return F.conv2d(padded, self.weight, bias, dilation=self.dilation)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``Conv2d`` that runs on the CPU as one batched matrix product per call.

    oneDNN's 1x1 convolution kernels reach a third to a half of the CPU's matmul peak on these
    shapes (r = 64 -> 2r and 80 mel channels -> 2r over rows x width = 15,000 positions), forward
    and backward. Written as ``baddbmm(bias, W, x)`` over ``(B, C_in, rows * W)``, the forward and
    both gradients are plain GEMMs: about twice as fast for 64 -> 128 and 80 -> 128, and +5-10 %
    on a whole WF2 training step (2-vCPU AMD EPYC, torch 2.13, in-process A/B). Same parameters
    and state-dict keys, the same FLOP count (2 B C_in C_out positions, forward and per gradient),
    equal to the convolution within float rounding (``tests/test_model.py``). Other devices keep
    the convolution (cuDNN's 1x1 kernels are GEMMs already).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C_in, rows, W)`` -> ``(B, C_out, rows, W)``. With ``base`` (``(B, C_out, rows, W)``),
        ``base + W x`` *without* the bias: the caller has folded the bias into ``base``, and the
        product accumulates straight into a copy of it (one GEMM, no separate full-size add)."""
        if x.device.type not in ("cpu", "meta"):
            return super().forward(x) if base is None else base + F.conv2d(x, self.weight)
        b, c, h, w = x.shape
        weight = self.weight.view(self.out_channels, c).expand(b, -1, -1)
        start = self.bias.view(1, -1, 1) if base is None else base.reshape(b, self.out_channels, h * w)
        return torch.baddbmm(start, weight, x.reshape(b, c, h * w)).view(b, self.out_channels, h, w)


class ResidualLayer(nn.Module):
    """One gated layer: dilated conv (causal in height, centred in width) + 1x1 conditioning.

    The output of ``res_skip`` is split into a residual half (added to the input of the next layer)
    and a skip half (summed over layers). The last layer has no next layer, so it outputs the skip
    half only (``last=True``), as in the authors' released code.
    """

    def __init__(
        self,
        channels: int,
        n_mels: int,
        kernel_size: int,
        dilation_h: int,
        dilation_w: int,
        last: bool,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.dilation_h = dilation_h
        self.dilation_w = dilation_w
        self.last = last
        self.dilated = normed(CausalConv2d(channels, 2 * channels, kernel_size, dilation_h, dilation_w), weight_norm)
        self.cond = normed(PointwiseConv2d(n_mels, 2 * channels), weight_norm)
        self.res_skip = normed(PointwiseConv2d(channels, channels if last else 2 * channels), weight_norm)

    @property
    def pad_h(self) -> int:
        """Rows of zeros above the input that make the height convolution causal."""
        return self.dilated.pad_h

    @property
    def pad_w(self) -> int:
        """Columns on each side that keep the width 'same' (non-causal along width)."""
        return self.dilated.pad_w

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``x``: (batch, r, rows, width); ``c``: (batch, n_mels, rows, width).

        Returns ``(residual or None, skip)``. Output row ``i`` sees input rows ``<= i`` only.
        """
        # dilated(x) + cond(c), with the conditioning product accumulated straight into the dilated
        # conv's output (both biases added by the conv): on the CPU a copy instead of a bias fill
        # and a full-size add, about 3 % of a training step.
        h = self.cond(c, self.dilated(x, self.dilated.bias + self.cond.bias))
        # chunk, not slicing: the backward of a split is one cat, of two slices two zero-filled
        # full-size buffers and two copies (about 4 % of a CPU training step).
        filt, gate = h.chunk(2, dim=1)
        gated = torch.tanh(filt) * torch.sigmoid(gate)
        out = self.res_skip(gated)
        if self.last:
            return None, out
        res, skip = out.chunk(2, dim=1)
        return x + res, skip


class CouplingNet(nn.Module):
    """The 2-D WaveNet that predicts each row's affine parameters from the rows above it.

    Args:
        channels: residual channels r.
        n_mels: conditioning channels.
        kernel_size: kernel of the dilated convs.
        dilations_h, dilations_w: per-layer dilations along height and width.
        weight_norm: weight-normalise every convolution but ``out`` (default; ``False``: plain weights).
    """

    def __init__(
        self,
        channels: int,
        n_mels: int,
        kernel_size: int,
        dilations_h: tuple[int, ...],
        dilations_w: tuple[int, ...],
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        n = len(dilations_h)
        self.front = normed(nn.Conv2d(1, channels, 1), weight_norm)  # no activation after it
        self.layers = nn.ModuleList(
            ResidualLayer(channels, n_mels, kernel_size, dh, dw, last=(i == n - 1), weight_norm=weight_norm)
            for i, (dh, dw) in enumerate(zip(dilations_h, dilations_w))
        )
        # Zero init: log_s = t = 0, so every flow starts as the identity and training starts stable.
        self.out = nn.Conv2d(channels, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (batch, 1, rows, width), ``c``: (batch, n_mels, rows, width) -> (log_s, t), each
        (batch, 1, rows, width)."""
        h = self.front(x)
        skip = None
        for layer in self.layers:
            res, s = layer(h, c)
            skip = s if skip is None else skip + s
            if res is not None:
                h = res
        params = self.out(skip)
        log_s, t = params.chunk(2, dim=1)
        return log_s, t
