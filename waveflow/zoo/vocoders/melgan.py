"""MelGAN generator (Kumar et al., NeurIPS 2019): a mel spectrogram to a waveform in one pass.

An architecture replica for cost measurement (random weights), written from the official code,
``descriptinc/melgan-neurips`` ``mel2wav/modules.py`` (``ResnetBlock`` :72-85, ``Generator``
:88-130; ``ngf`` 32 and 3 residual layers are the defaults of ``scripts/train.py`` and of the
released models loaded by ``mel2wav/interface.py``), and from the follow-up paper's copy of it,
``ConstanceDws/neural-audio-energy`` ``src/models/melgan/generator.py`` + ``utils.py`` (the same
generator with the upsampling ratios as an argument) with its ``small``/``medium``/``large``/
``default`` YAML configurations.

Generator, with ``n = len(ratios)`` and ``mult = 2^n``: ReflectionPad(3), Conv1d(80 -> mult ngf,
k 7); then per ratio r: LeakyReLU(0.2), ConvTranspose1d(mult ngf -> mult ngf / 2, k 2r, stride r,
pad r // 2 + r % 2, output_padding r % 2), and ``n_residual_layers`` residual blocks of dilation
3^j; finally LeakyReLU(0.2), ReflectionPad(3), Conv1d(ngf -> 1, k 7) and tanh. Residual block:
[LeakyReLU(0.2), ReflectionPad(d), Conv1d(k 3, dilation d), LeakyReLU(0.2), Conv1d(k 1)] plus a
*learned* 1x1 shortcut convolution. Every convolution is weight-normalised, with bias.

The configurations (all with ratios 8, 8, 2, 2 = hop 256 and 80 mels): the follow-up's ``small`` is
ngf 16 with 2 residual layers, ``medium`` ngf 32 with 3 (= the official MelGAN), ``large`` ngf 64
with 4; its ``default.yaml`` equals ``medium``.

Parameter counts (official module, weight norm applied: weight_g + weight_v per convolution;
reproduced exactly, ``tests/test_vocoders_gan.py``): official / medium 4,266,050; small 1,030,786;
large 18,214,658. The HiFi-GAN paper's 4.26 M for MelGAN is the count without weight norm
(4,260,257) cut to two decimals, as its HiFi-GAN figures are.

Decisions on the uncertain points:

* Weight norm stays on after building (the parameter count is the official module's; neither the
  official ``mel2wav/interface.py`` nor the follow-up removes it before synthesis).
  :meth:`MelGAN.remove_weight_norm` folds it for a measurement of the folded form.
* Sample rate: the official model is 22.05 kHz (LJ Speech, ``Audio2Mel`` defaults). The follow-up's
  Lightning module sets ``self.sr = 16000`` (``src/models/melgan/model.py``), used by its data set
  and metrics: the follow-up sizes here run at 16 kHz. The rate only sets how many mel frames a
  second of audio is; the network is the same.
* Output length: each transposed convolution multiplies the length by r exactly (odd r included,
  through ``output_padding``), so the output is ``frames x hop`` with no crop.
* Shortest input: reflection padding needs more samples than it pads, so the mel needs at least 4
  frames (``ReflectionPad1d(3)``) and every residual stage more samples than its largest dilation
  (27 at the first stage of ``large``, which 4 frames x 8 = 32 samples exceed); :attr:`MelGAN.min_frames`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec
from .hifigan import FOLLOW_UP_SAMPLE_RATE, fold_weight_norm, weight_normed

LRELU_SLOPE = 0.2

_PAPER = (
    "Kumar, Kumar, de Boissiere, Gestin, Teoh, Sotelo, de Brebisson, Bengio & Courville, 'MelGAN: Generative "
    "Adversarial Networks for Conditional Waveform Synthesis', NeurIPS 2019"
)
_FOLLOW_UP_PAPER = (
    "Douwes, Bindi, Caillon, Esling & Briot, 'Is Quality Enough? Integrating Energy Consumption in a "
    "Large-Scale Evaluation of Neural Audio Synthesis Models', ICASSP 2023"
)
_CODE = "github.com/descriptinc/melgan-neurips @ 6488045bfba1975602288de07a58570c7b4d66ea, mel2wav/modules.py"
_FOLLOW_UP_CODE = (
    "github.com/ConstanceDws/neural-audio-energy @ 00428c01ffe6e131dc40dc9c6e7195c925cb12ab, "
    "src/models/melgan/generator.py + utils.py + {size}.yaml"
)


@dataclass(frozen=True)
class MelGANConfig:
    """The generator arguments of the official code, plus the data's rate."""

    ngf: int = 32
    n_residual_layers: int = 3
    ratios: tuple[int, ...] = (8, 8, 2, 2)
    n_mels: int = 80
    sample_rate: int = 22_050

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


#: the official MelGAN (``scripts/train.py`` defaults, the released LJ Speech model)
OFFICIAL = MelGANConfig()
SMALL = MelGANConfig(ngf=16, n_residual_layers=2, sample_rate=FOLLOW_UP_SAMPLE_RATE)
MEDIUM = replace(OFFICIAL, sample_rate=FOLLOW_UP_SAMPLE_RATE)
LARGE = MelGANConfig(ngf=64, n_residual_layers=4, sample_rate=FOLLOW_UP_SAMPLE_RATE)


class ResnetBlock(nn.Module):
    """Dilated k-3 conv then 1x1 conv, added to a learned 1x1 shortcut (not an identity)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        # Registration order follows the official module (block convs, then shortcut), so the
        # parameters line up one to one with the official state dict's.
        self.conv = weight_normed(nn.Conv1d(channels, channels, 3, dilation=dilation))
        self.pointwise = weight_normed(nn.Conv1d(channels, channels, 1))
        self.shortcut = weight_normed(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = F.pad(F.leaky_relu(x, LRELU_SLOPE), (self.dilation, self.dilation), mode="reflect")
        y = self.pointwise(F.leaky_relu(self.conv(y), LRELU_SLOPE))
        return self.shortcut(x) + y


class UpStage(nn.Module):
    """LeakyReLU, transposed conv (x r exactly), then the residual stack of dilations 1, 3, 9, ..."""

    def __init__(self, channels: int, ratio: int, n_residual_layers: int) -> None:
        super().__init__()
        self.up = weight_normed(
            nn.ConvTranspose1d(
                channels,
                channels // 2,
                kernel_size=2 * ratio,
                stride=ratio,
                padding=ratio // 2 + ratio % 2,
                output_padding=ratio % 2,
            )
        )
        self.res = nn.Sequential(*(ResnetBlock(channels // 2, 3**j) for j in range(n_residual_layers)))

    def forward(self, x: Tensor) -> Tensor:
        return self.res(self.up(F.leaky_relu(x, LRELU_SLOPE)))


class MelGAN(Vocoder):
    """mel (B, n_mels, T) -> waveform (B, T * hop_length) in [-1, 1]."""

    def __init__(self, config: MelGANConfig = OFFICIAL) -> None:
        super().__init__()
        cfg = self.config = config
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        mult = 2 ** len(cfg.ratios)
        self.conv_pre = weight_normed(nn.Conv1d(cfg.n_mels, mult * cfg.ngf, 7))
        self.stages = nn.ModuleList(
            UpStage(mult * cfg.ngf // 2**i, r, cfg.n_residual_layers) for i, r in enumerate(cfg.ratios)
        )
        self.conv_post = weight_normed(nn.Conv1d(cfg.ngf, 1, 7))

    @property
    def min_frames(self) -> int:
        """At least 4 frames (reflection pad 3) and every stage longer than its largest dilation."""
        frames = 4
        largest = 3 ** (self.config.n_residual_layers - 1) if self.config.n_residual_layers else 0
        scale = 1
        for r in self.config.ratios:
            scale *= r
            frames = max(frames, largest // scale + 1)
        return frames

    def forward(self, mel: Tensor) -> Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"MelGAN: expected a mel of shape (batch, {self.n_mels}, frames), got {tuple(mel.shape)}")
        if mel.shape[-1] < self.min_frames:
            raise ValueError(
                f"MelGAN: {mel.shape[-1]} mel frame(s) is shorter than the {self.min_frames} its reflection "
                "padding needs; give a longer audio length"
            )
        x = self.conv_pre(F.pad(mel, (3, 3), mode="reflect"))
        for stage in self.stages:
            x = stage(x)
        x = self.conv_post(F.pad(F.leaky_relu(x, LRELU_SLOPE), (3, 3), mode="reflect"))
        return torch.tanh(x).squeeze(1)

    def remove_weight_norm(self) -> MelGAN:
        """Fold weight norm into plain weights (neither official code path does this)."""
        return fold_weight_norm(self)


def _spec(name: str, group: str, cfg: MelGANConfig, official: int, paper: float | None, notes: str) -> VocoderSpec:
    size = name.removeprefix("melgan-")
    return VocoderSpec(
        name=name,
        family="MelGAN",
        group=group,
        build=lambda: MelGAN(cfg),
        official_params=official,
        paper_params=paper,
        paper=_PAPER if group == "reference" else _FOLLOW_UP_PAPER,
        code=_CODE if group == "reference" else _FOLLOW_UP_CODE.format(size=size),
        notes=notes,
    )


_FU = "16 kHz as the follow-up's training code runs it, hop 256, 80 mels"
VARIANTS: tuple[VocoderSpec, ...] = (
    _spec("melgan-small", "follow-up", SMALL, 1_030_786, None, f"ngf 16, 2 residual layers; {_FU}"),
    _spec("melgan-medium", "follow-up", MEDIUM, 4_266_050, None, f"ngf 32, 3 residual layers (= default.yaml); {_FU}"),
    _spec("melgan-large", "follow-up", LARGE, 18_214_658, None, f"ngf 64, 4 residual layers; {_FU}"),
    _spec(
        "melgan",
        "reference",
        OFFICIAL,
        4_266_050,
        4.26,
        "official MelGAN (ngf 32, 3 residual layers), 22.05 kHz, hop 256, 80 mels; parameters with weight norm "
        "(the HiFi-GAN paper's 4.26 M is the count without it, cut to two decimals)",
    ),
)
