"""HiFi-GAN generator (Kong, Kim & Bae, NeurIPS 2020): a mel spectrogram to a waveform in one pass.

An architecture replica for cost measurement (random weights), written from the official code,
``jik876/hifi-gan`` ``models.py`` (``ResBlock1`` :11-48, ``ResBlock2`` :51-72, ``Generator``
:75-125) with ``config_v1.json``/``config_v2.json``/``config_v3.json``, and from the follow-up
paper's copy of it, ``ConstanceDws/neural-audio-energy`` ``src/models/hifigan/models.py`` (same
generator, line for line) with its ``small``/``medium``/``large``/``default`` YAML configurations.

Generator: ``conv_pre`` (Conv1d 80 -> C, k 7, pad 3), then per upsampling stage i: LeakyReLU(0.1),
ConvTranspose1d(C/2^i -> C/2^(i+1), k_i, stride u_i, pad (k_i - u_i) // 2), then the *mean* of
``len(resblock_kernel_sizes)`` parallel residual blocks (multi-receptive-field fusion); finally
LeakyReLU, ``conv_post`` (Conv1d C/2^n -> 1, k 7, pad 3, with bias) and tanh. Every convolution is
weight-normalised. ResBlock1 (V1, V2): three units of [LeakyReLU, conv dilated d_m, LeakyReLU, conv
dilation 1] with a residual around each unit; ResBlock2 (V3): two units of [LeakyReLU, conv dilated
d_m] with a residual around each. All convolutions are "same" (zero padding d (k - 1) / 2).

The configurations: the follow-up's ``small`` is HiFi-GAN V3, ``medium`` is V2, ``large`` is V1,
and its ``default.yaml`` equals ``large`` (V1) key for key.

Parameter counts (official module, weight norm applied, so weight_g + weight_v per convolution;
reproduced exactly, ``tests/test_vocoders_gan.py``): V1 13,936,130; V2 928,514; V3 1,464,322. The
HiFi-GAN paper's 13.92 M / 0.92 M / 1.46 M are the counts *without* weight norm (13,926,017;
925,985; 1,462,273: the inference form after ``remove_weight_norm``) cut to two decimals.

Decisions on the uncertain points:

* The final activation before ``conv_post`` is ``F.leaky_relu(x)`` in the official code, i.e. slope
  0.01, not the 0.1 used everywhere else; kept as written.
* Weight norm stays on after building (the parameter count is the official module's). The official
  ``inference.py`` calls ``remove_weight_norm()`` before synthesis, the follow-up's code does not;
  :meth:`HiFiGAN.remove_weight_norm` folds it for whoever measures the former. Weight norm adds one
  norm per convolution per call, nothing that scales with the audio length.
* Sample rate: the official configurations are 22.05 kHz (LJ Speech). The follow-up's YAML files
  keep ``sampling_rate: 22050`` but its Lightning module overrides it (``self.sr = 16000`` in
  ``src/models/hifigan/__init__.py``, which the data set, metrics and logging use): the follow-up
  sizes here run at 16 kHz, as that code trains and evaluates them. The rate only sets how many mel
  frames a second of audio is; the network is the same.
* Output length is ``frames x prod(upsample_rates)`` exactly: every configuration has
  ``k_i - u_i`` even, so each transposed convolution multiplies the length by ``u_i`` exactly (the
  configuration refuses any other); no crop is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from .base import Vocoder, VocoderSpec

LRELU_SLOPE = 0.1
#: the follow-up's training code runs every model at 16 kHz (see the module docstring)
FOLLOW_UP_SAMPLE_RATE = 16_000

_PAPER = (
    "Kong, Kim & Bae, 'HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity Speech "
    "Synthesis', NeurIPS 2020"
)
_FOLLOW_UP_PAPER = (
    "Douwes, Bindi, Caillon, Esling & Briot, 'Is Quality Enough? Integrating Energy Consumption in a "
    "Large-Scale Evaluation of Neural Audio Synthesis Models', ICASSP 2023"
)
_CODE = "github.com/jik876/hifi-gan @ 4769534d45265d52a904b850da5a622601885777, models.py + config_v{v}.json"
_FOLLOW_UP_CODE = (
    "github.com/ConstanceDws/neural-audio-energy @ 00428c01ffe6e131dc40dc9c6e7195c925cb12ab, "
    "src/models/hifigan/models.py + {size}.yaml"
)


def weight_normed(module: nn.Module) -> nn.Module:
    """``module`` with weight norm on ``weight`` (dim 0, as ``torch.nn.utils.weight_norm``).

    The parametrisation holds ``original0`` (g) and ``original1`` (v), the same shapes as the
    legacy ``weight_g`` and ``weight_v``, so the parameter count is the official one.
    """
    return weight_norm(module, name="weight", dim=0)


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrisation in ``model`` by its current weight (in place).

    The folded weight is always a parameter: ``remove_parametrizations`` alone leaves a *buffer*
    when called under ``no_grad`` (its weight then does not require grad), which would hide it
    from ``parameters()``.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            requires_grad = module.parametrizations.weight.original1.requires_grad
            with torch.no_grad():
                weight = module.weight.clone()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module._buffers.pop("weight", None)
            module._parameters.pop("weight", None)
            module.weight = nn.Parameter(weight, requires_grad=requires_grad)
    return model


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


@dataclass(frozen=True)
class HiFiGANConfig:
    """The generator keys of the official JSON/YAML configurations, plus the data's rate and bands."""

    resblock: int  # 1 (V1, V2) or 2 (V3)
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    n_mels: int = 80  # the official conv_pre hard-codes 80 input channels
    sample_rate: int = 22_050

    def __post_init__(self) -> None:
        if self.resblock not in (1, 2):
            raise ValueError(f"HiFi-GAN: resblock must be 1 or 2, got {self.resblock}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("HiFi-GAN: one kernel size per upsampling rate")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("HiFi-GAN: one dilation list per residual-block kernel size")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if (k - u) % 2:
                raise ValueError(f"HiFi-GAN: kernel {k} at rate {u} would not upsample by exactly {u}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)


#: HiFi-GAN V1, V2, V3 (``config_v1.json`` .. ``config_v3.json``); generator keys only
V1 = HiFiGANConfig(1, (8, 8, 2, 2), (16, 16, 4, 4), 512, (3, 7, 11), ((1, 3, 5),) * 3)
V2 = HiFiGANConfig(1, (8, 8, 2, 2), (16, 16, 4, 4), 128, (3, 7, 11), ((1, 3, 5),) * 3)
V3 = HiFiGANConfig(2, (8, 8, 4), (16, 16, 8), 256, (3, 5, 7), ((1, 2), (2, 6), (3, 12)))


class ResBlock1(nn.Module):
    """Units of [LeakyReLU, dilated conv, LeakyReLU, conv], each wrapped in a residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_normed(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_normed(nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1)))
            for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for dilated, plain in zip(self.convs1, self.convs2):
            y = dilated(F.leaky_relu(x, LRELU_SLOPE))
            x = x + plain(F.leaky_relu(y, LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Units of [LeakyReLU, dilated conv], each wrapped in a residual (V3's lighter block)."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_normed(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_same_padding(kernel_size, d)))
            for d in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


def fuse(blocks: nn.ModuleList, x: Tensor) -> Tensor:
    """The multi-receptive-field fusion of one upsampling stage: the mean of its blocks' outputs
    (HiFi-GAN's MRF; BigVGAN keeps it with anti-aliased blocks)."""
    fused = blocks[0](x)
    for block in blocks[1:]:
        fused = fused + block(x)
    return fused / len(blocks)


class HiFiGAN(Vocoder):
    """mel (B, n_mels, T) -> waveform (B, T * hop_length) in [-1, 1]."""

    def __init__(self, config: HiFiGANConfig = V1) -> None:
        super().__init__()
        cfg = self.config = config
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        ch = cfg.upsample_initial_channel
        # Registration order follows the official module (conv_pre, ups, resblocks, conv_post), so the
        # parameters line up one to one with the official state dict's.
        self.conv_pre = weight_normed(nn.Conv1d(cfg.n_mels, ch, 7, padding=3))
        self.ups = nn.ModuleList(
            weight_normed(nn.ConvTranspose1d(ch // 2**i, ch // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        block = ResBlock1 if cfg.resblock == 1 else ResBlock2
        self.resblocks = nn.ModuleList(
            block(ch // 2 ** (i + 1), k, tuple(d))
            for i in range(len(self.ups))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        self.conv_post = weight_normed(nn.Conv1d(ch // 2 ** len(self.ups), 1, 7, padding=3))

    def forward(self, mel: Tensor) -> Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"HiFiGAN: expected a mel of shape (batch, {self.n_mels}, frames), got {tuple(mel.shape)}")
        n = len(self.config.resblock_kernel_sizes)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = fuse(self.resblocks[i * n : (i + 1) * n], x)
        # Official quirk: this one activation uses F.leaky_relu's default slope, 0.01.
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))
        return x.squeeze(1)

    def remove_weight_norm(self) -> HiFiGAN:
        """Fold weight norm into plain weights, as the official ``inference.py`` does before synthesis."""
        return fold_weight_norm(self)


def _reference(v: int, cfg: HiFiGANConfig, official: int, paper: float) -> VocoderSpec:
    return VocoderSpec(
        name=f"hifigan-v{v}",
        family="HiFi-GAN",
        group="reference",
        build=lambda: HiFiGAN(cfg),
        official_params=official,
        paper_params=paper,
        paper=_PAPER,
        code=_CODE.format(v=v),
        notes=(
            f"HiFi-GAN V{v}, 22.05 kHz, hop 256, 80 mels; parameters with weight norm (the paper's {paper} M "
            "is the count without it, cut to two decimals); final LeakyReLU slope 0.01 as in the official code"
        ),
    )


def _follow_up(size: str, cfg: HiFiGANConfig, official: int, same_as: str) -> VocoderSpec:
    fu = replace(cfg, sample_rate=FOLLOW_UP_SAMPLE_RATE)
    return VocoderSpec(
        name=f"hifigan-{size}",
        family="HiFi-GAN",
        group="follow-up",
        build=lambda: HiFiGAN(fu),
        official_params=official,
        paper_params=None,
        paper=_FOLLOW_UP_PAPER,
        code=_FOLLOW_UP_CODE.format(size=size),
        notes=(
            f"{size}.yaml = HiFi-GAN {same_as}'s generator (default.yaml = large); 16 kHz as the follow-up's "
            "training code runs it (its YAML's sampling_rate 22050 is overridden), hop 256, 80 mels"
        ),
    )


VARIANTS: tuple[VocoderSpec, ...] = (
    _follow_up("small", V3, 1_464_322, "V3"),
    _follow_up("medium", V2, 928_514, "V2"),
    _follow_up("large", V1, 13_936_130, "V1"),
    _reference(1, V1, 13_936_130, 13.92),
    _reference(2, V2, 928_514, 0.92),
    _reference(3, V3, 1_464_322, 1.46),
)
