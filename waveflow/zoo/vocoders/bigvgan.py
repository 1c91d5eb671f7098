"""BigVGAN (Lee, Ping, Ginsburg, Catanzaro & Yoon, ICLR 2023): HiFi-GAN with anti-aliased periodic activations.

An architecture replica for cost measurement (random weights), written from the official code,
``NVIDIA/BigVGAN`` (``bigvgan.py`` ``AMPBlock1`` and ``BigVGAN``, ``activations.py`` ``Snake`` and
``SnakeBeta``, and the pure-PyTorch anti-aliased activation ``alias_free_activation/torch/``
``filter.py``, ``resample.py``, ``act.py``) with ``configs/bigvgan_24khz_100band.json`` (BigVGAN,
the paper's 112 M model) and ``configs/bigvgan_base_24khz_100band.json`` (BigVGAN-base, 14 M). Both:
24 kHz, 100 mels, hop 256, ``resblock "1"`` (AMPBlock1), kernels (3, 7, 11) with dilations (1, 3, 5),
SnakeBeta with log-scale alpha and beta.

Generator: ``conv_pre`` Conv1d(100 -> C, k 7); per stage i a ConvTranspose1d(C / 2^i -> C / 2^(i+1),
k_i, stride u_i, pad (k_i - u_i) / 2) -- no activation before it, unlike HiFi-GAN -- then the mean of
three AMPBlock1; finally an anti-aliased SnakeBeta (``activation_post``), ``conv_post`` Conv1d(-> 1,
k 7) and tanh. Every convolution is weight-normalised. AMPBlock1 is HiFi-GAN's ResBlock1 with each
LeakyReLU replaced by ``Activation1d``: upsample x2 (a transposed depthwise conv with a 12-tap
kaiser-windowed sinc, replicate-padded), SnakeBeta x + 1 / exp(beta) sin^2(exp(alpha) x) per channel,
then low-pass (same kind of filter) and downsample x2. The filters are fixed: buffers, not parameters.
BigVGAN: C = 1536, rates (4, 4, 2, 2, 2, 2), kernels (8, 8, 4, 4, 4, 4); base: C = 512, rates
(8, 8, 2, 2), kernels (16, 16, 4, 4), i.e. HiFi-GAN V1's layout.

Parameter counts (official ``BigVGAN(h)`` built from each JSON and counted, weight norm on, so g + v
per convolution; reproduced exactly, ``tests/test_vocoders_current.py``): BigVGAN 112,446,290 (without
weight norm 112,414,513); BigVGAN-base 14,025,154 (without 14,015,041). The paper prints 112 M and
14 M. BigVGAN-v2 (``configs/bigvgan_v2_24khz_100band_256x.json``, :data:`V2_24KHZ`) is the 112 M
layout without the bias of ``conv_post`` and with a clamp instead of the final tanh: 112,446,289.
With an official generator's state dict loaded (keys, filters included, match one to one), the
replica's output equals the official forward's exactly, for all three configurations.

Decisions on the uncertain points:

* The pure-PyTorch activation is replicated, not the optional fused CUDA kernel of v2
  (``use_cuda_kernel``, inference only): the arithmetic is the same, the kernel fuses it.
* Weight norm stays on after building (the count is the official module's); the official
  ``inference.py`` calls ``remove_weight_norm()`` first, which :meth:`BigVGAN.remove_weight_norm` does
  here too. It costs one norm per convolution per call, nothing that scales with the audio.
* The kaiser-sinc filters are registered (persistent) buffers as in the official code, so that they
  move with the module, to the meta device included, and load from an official state dict; they
  are built once per activation (as the official modules do) rather than shared.
* Output length is ``frames x 256`` exactly: every ``k_i - u_i`` is even and the activations keep the
  length; no crop. Replicate padding accepts any length, so one frame is enough (``min_frames`` 1).
* Weight initialisation: PyTorch's defaults (the official ``init_weights`` writes N(0, 0.01) into the
  *computed* weight of a weight-normed layer, which the next forward overwrites); values do not
  change the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec
from .hifigan import fold_weight_norm, fuse, weight_normed

_PAPER = (
    "Lee, Ping, Ginsburg, Catanzaro & Yoon, 'BigVGAN: A Universal Neural Vocoder with Large-Scale Training', ICLR 2023"
)
_CODE = "github.com/NVIDIA/BigVGAN @ 7d2b454564a6c7d014227f635b7423881f14bdac, bigvgan.py + configs/{config}.json"


@dataclass(frozen=True)
class BigVGANConfig:
    """The generator keys of the official JSON configurations (``resblock "1"`` only)."""

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5),) * 3
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_bias_at_final: bool = True  # v2 configurations: False
    use_tanh_at_final: bool = True  # v2 configurations: False (clamp to [-1, 1] instead)
    n_mels: int = 100
    sample_rate: int = 24_000

    def __post_init__(self) -> None:
        if self.activation not in ("snake", "snakebeta"):
            raise ValueError(f"BigVGAN: activation must be 'snake' or 'snakebeta', got {self.activation!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("BigVGAN: one kernel size per upsampling rate")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("BigVGAN: one dilation list per AMP-block kernel size")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if (k - u) % 2:
                raise ValueError(f"BigVGAN: kernel {k} at rate {u} would not upsample by exactly {u}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)


#: ``bigvgan_24khz_100band.json``: the paper's 112 M BigVGAN
BIGVGAN_24KHZ = BigVGANConfig((4, 4, 2, 2, 2, 2), (8, 8, 4, 4, 4, 4), 1536)
#: ``bigvgan_base_24khz_100band.json``: BigVGAN-base (HiFi-GAN V1's layout), 14 M
BASE_24KHZ = BigVGANConfig((8, 8, 2, 2), (16, 16, 4, 4), 512)
#: ``bigvgan_v2_24khz_100band_256x.json``: BigVGAN-v2, the 112 M layout without conv_post's bias or tanh
V2_24KHZ = BigVGANConfig((4, 4, 2, 2, 2, 2), (8, 8, 4, 4, 4, 4), 1536, use_bias_at_final=False, use_tanh_at_final=False)


class Snake(nn.Module):
    """x + 1/a sin^2(a x), one trainable a per channel (stored as log a when ``logscale``)."""

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        # Log-scale parameters start at 0 (a = 1), linear ones at 1: the official initial values.
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha = self.alpha[None, :, None]
        if self.logscale:
            alpha = alpha.exp()
        return x + torch.sin(x * alpha).pow(2) / (alpha + 1e-9)


class SnakeBeta(nn.Module):
    """x + 1/b sin^2(a x): frequency a and magnitude b per channel (log-scale when ``logscale``)."""

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        alpha, beta = self.alpha[None, :, None], self.beta[None, :, None]
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> Tensor:
    """A (1, 1, kernel_size) low-pass: sinc at ``cutoff`` (cycles per sample) under a Kaiser window.

    The Kaiser beta comes from Kaiser's empirical formula for the attenuation A that a transition band of
    ``2 * half_width`` allows; the taps are normalised to sum to 1 so that a constant passes unchanged.
    An even size puts the taps at half-integer times (no centre tap), as StyleGAN3's filters.
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    if kernel_size % 2 == 0:
        time = torch.arange(-half, half) + 0.5
    else:
        time = torch.arange(kernel_size) - half
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """x ``ratio``: replicate-pad, transposed depthwise conv with the low-pass, gain ``ratio``, trim."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)
        return x[..., self.trim_left : -self.trim_right]


class LowPassFilter1d(nn.Module):
    """Replicate-padded depthwise convolution with the kaiser-sinc low-pass, at ``stride``."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class DownSample1d(nn.Module):
    """/ ``ratio``: low-pass at the new Nyquist and keep every ``ratio``-th sample (one strided conv)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        # Held as ``lowpass`` so that the buffer's name matches the official state dict.
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Anti-aliased activation: upsample x2, the periodic nonlinearity, low-pass and downsample x2.

    Running the nonlinearity at twice the rate keeps the harmonics it creates below the new Nyquist,
    and the low-pass removes them before decimation, so that they do not alias back.
    """

    def __init__(self, activation: nn.Module, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(self.act(self.upsample(x)))


def _periodic(cfg: BigVGANConfig, channels: int) -> nn.Module:
    cls = SnakeBeta if cfg.activation == "snakebeta" else Snake
    return Activation1d(cls(channels, logscale=cfg.snake_logscale))


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPBlock1(nn.Module):
    """Units of [act, dilated conv, act, conv], each with a residual; acts are anti-aliased Snake(Beta).

    The activations sit in one list, two per unit (even: before the dilated conv, odd: before the
    plain one), as the official module registers them.
    """

    def __init__(self, cfg: BigVGANConfig, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_normed(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_normed(nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)))
            for _ in dilations
        )
        self.activations = nn.ModuleList(_periodic(cfg, channels) for _ in range(2 * len(dilations)))

    def forward(self, x: Tensor) -> Tensor:
        for i, (dilated, plain) in enumerate(zip(self.convs1, self.convs2)):
            y = dilated(self.activations[2 * i](x))
            x = x + plain(self.activations[2 * i + 1](y))
        return x


class BigVGAN(Vocoder):
    """mel (B, n_mels, T) -> waveform (B, T * hop_length) in [-1, 1]."""

    def __init__(self, config: BigVGANConfig = BIGVGAN_24KHZ) -> None:
        super().__init__()
        cfg = self.config = config
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        ch = cfg.upsample_initial_channel
        # Registration order and nesting follow the official module (conv_pre, ups[i][0], resblocks,
        # activation_post, conv_post), so that the parameters line up with the official state dict's.
        self.conv_pre = weight_normed(nn.Conv1d(cfg.n_mels, ch, 7, padding=3))
        widths = [ch // 2**i for i in range(len(cfg.upsample_rates) + 1)]  # channels halve at every stage
        self.ups = nn.ModuleList(
            nn.ModuleList([weight_normed(nn.ConvTranspose1d(widths[i], widths[i + 1], k, u, padding=(k - u) // 2))])
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            AMPBlock1(cfg, widths[i + 1], k, tuple(d))
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        last = widths[-1]
        self.activation_post = _periodic(cfg, last)
        self.conv_post = weight_normed(nn.Conv1d(last, 1, 7, padding=3, bias=cfg.use_bias_at_final))

    def forward(self, mel: Tensor) -> Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"BigVGAN: expected a mel of shape (batch, {self.n_mels}, frames), got {tuple(mel.shape)}")
        n = len(self.config.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, stage in enumerate(self.ups):
            for up in stage:
                x = up(x)
            x = fuse(self.resblocks[i * n : (i + 1) * n], x)
        x = self.conv_post(self.activation_post(x))
        x = torch.tanh(x) if self.config.use_tanh_at_final else x.clamp(-1.0, 1.0)
        return x.squeeze(1)

    def remove_weight_norm(self) -> BigVGAN:
        """Fold weight norm into plain weights, as the official ``inference.py`` does before synthesis."""
        return fold_weight_norm(self)


def _spec(name: str, config: str, cfg: BigVGANConfig, official: int, paper: float, notes: str) -> VocoderSpec:
    return VocoderSpec(
        name=name,
        family="BigVGAN",
        group="current",
        build=lambda: BigVGAN(cfg),
        official_params=official,
        paper_params=paper,
        paper=_PAPER,
        code=_CODE.format(config=config),
        notes=notes,
    )


VARIANTS: tuple[VocoderSpec, ...] = (
    _spec(
        "bigvgan",
        "bigvgan_24khz_100band",
        BIGVGAN_24KHZ,
        112_446_290,
        112.0,
        "the paper's 112 M BigVGAN (v1 release nvidia/bigvgan_24khz_100band): 24 kHz, 100 mels, hop 256, C 1536, "
        "AMPBlock1 with anti-aliased log-scale SnakeBeta (pure-PyTorch activation, not the v2 CUDA kernel); "
        "parameters with weight norm (112,414,513 without)",
    ),
    _spec(
        "bigvgan-base",
        "bigvgan_base_24khz_100band",
        BASE_24KHZ,
        14_025_154,
        14.0,
        "BigVGAN-base (nvidia/bigvgan_base_24khz_100band): HiFi-GAN V1's layout (C 512, rates 8-8-2-2) with AMP "
        "blocks, 24 kHz, 100 mels, hop 256; parameters with weight norm (14,015,041 without)",
    ),
)
