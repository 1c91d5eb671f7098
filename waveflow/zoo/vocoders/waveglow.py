"""WaveGlow (Prenger, Valle & Catanzaro, ICASSP 2019), synthesis pass only, in four configurations.

A replica for cost measurement (time, energy, FLOPs) of one synthesis from a mel spectrogram;
weights are random and the output is noise.

Sources:

* ``NVIDIA/waveglow`` @ 8afb643df59265016af6bd255c7516309d675168: ``glow.py`` (``Invertible1x1Conv``,
  ``WN``, ``WaveGlow.infer``, ``remove_weightnorm``), ``config.json`` (the published network),
  ``inference.py`` (removes weight norm before ``infer``), README (sigma 0.6 in its example);
* the follow-up paper's code, ``ConstanceDws/neural-audio-energy`` @
  00428c01ffe6e131dc40dc9c6e7195c925cb12ab: ``src/models/waveglow/waveglow.py`` (NVIDIA's
  ``glow.py`` with the ``WN`` arguments flattened), ``model.py`` (``generate`` calls ``infer``
  with its default sigma 1.0, weight norm still on) and ``{small,medium,large}.yaml`` (16 kHz,
  mel stride 256, 80 mels, 12 flows, groups of 8, 2 early outputs every 4 flows, WN with 8
  layers of kernel 3 and 64 / 128 / 256 channels). ``default.yaml`` equals ``large.yaml``.

Architecture (both sources):

* mel upsampler ``ConvTranspose1d(80, 80, 1024, stride 256)`` inside the generator: F frames ->
  256 F + 768 samples, of which ``infer`` keeps the first 256 F (it crops kernel - stride);
* the conditioning is folded into groups of 8 samples: (80, 256 F) -> (640, 32 F);
* 12 flows over 8 audio channels; before flows 4 and 8 (forward direction) 2 channels leave as
  early outputs, so the flows see 8, 8, 8, 8, 6, 6, 6, 6, 4, 4, 4, 4 channels;
* each flow: an invertible 1x1 convolution (an orthonormal c x c matrix, no bias) and an affine
  coupling whose WN maps half the channels and the 640-channel conditioning to (b, log s):
  start 1x1 (weight-normed), conditioning 1x1 640 -> 2 x 8 x n_channels (weight-normed), 8
  layers of dilated conv (kernel 3, dilation 2^i, n_channels -> 2 n_channels, weight-normed),
  tanh x sigmoid, a 1x1 res/skip conv (2 n_channels out, n_channels for the last layer,
  weight-normed), and a zero-initialised 1x1 end conv without weight norm.

Synthesis (``forward``, as ``WaveGlow.infer``): upsample and crop the mel, fold it into groups,
draw z ~ N(0, sigma^2) for the channels still in the flow, run the flows in reverse
(``audio_1 = (audio_1 - b) / exp(log s)``, then the inverse 1x1 conv) and, after flows 8 and 4,
prepend 2 fresh N(0, sigma^2) channels; unfold the groups back to (B, 256 F) samples.

Parameters (the official modules instantiated in a scratch directory and counted with
``parameters()``; the upsampler is inside both, 6,553,680 parameters; the 12 1x1 matrices hold
464; every WN conv but ``end`` has a weight-norm gain ``weight_g`` per output channel next to its
``weight_v``):

* follow-up small / medium / large: **17,595,752 / 34,830,440 / 87,879,272** (weight norm on);
* reference (``config.json``, after ``remove_weightnorm`` as ``inference.py`` runs it):
  **87,731,816**, which is the 87.73 M the HiFi-GAN paper prints for WaveGlow exactly (with the
  147,456 gains it would be 87,879,272, i.e. the follow-up's ``large``).

Checked against the official code (scratch copies, float64, random weights, the same z): the
official module's ``state_dict`` loads into the replica as is (the parameter names are the
same) and ``infer`` and ``forward`` give identical waveforms, for the follow-up's ``small`` and
for NVIDIA's network after ``remove_weightnorm``.

Decisions on the uncertain points:

* Reference width: 256 WN channels, as ``config.json`` and the published
  ``waveglow_256channels`` checkpoint have, not the 512 the WaveGlow paper's text mentions (the
  code has a single ``n_channels``; 512 would give 268,294,760 parameters, far from 87.73 M).
* Weight norm: the reference removes it (``inference.py``), so its convs are plain; the
  follow-up's ``generate`` calls ``infer`` on the trained module, so its WN convs recompute
  ``g v / ||v||`` at every call, as the legacy ``nn.utils.weight_norm`` hook does.
* Inverse 1x1 convolution: the official ``infer`` inverts each matrix on its first call and keeps
  the inverse on the module for every later call; the replica does the same (it caches the
  inverse, recomputed when the weight changes), so one measured synthesis costs what a deployed
  model's does: the 12 inversions of at most 8 x 8 matrices (about 6 kFLOP) are paid once per
  model, not per call, and would be invisible next to the ~10^11 multiply-accumulates of a
  second of audio anyway.
* sigma: 0.6 for the reference (README example), 1.0 for the follow-up (``infer``'s default;
  the yaml ``sigma`` is the loss's). It does not change the cost.
* Precision follows the mel's dtype (the official fp16 branches only pick the dtype of z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec, check_mel

FOLLOW_UP_PAPER = (
    "Douwes, Bindi, Caillon, Esling & Briot, 'Is quality enough? Integrating energy consumption in a "
    "large-scale evaluation of neural audio synthesis models', ICASSP 2023"
)
FOLLOW_UP_CODE = "github.com/ConstanceDws/neural-audio-energy @ 00428c01ffe6e131dc40dc9c6e7195c925cb12ab"
NVIDIA_CODE = "github.com/NVIDIA/waveglow @ 8afb643df59265016af6bd255c7516309d675168"


# ------------------------------------------------------------------------------------------------
# weight norm (the legacy ``nn.utils.weight_norm`` over dim 0, as both official codes use)
def weight_normalise(conv: nn.Module) -> None:
    """Replace ``conv.weight`` by a direction ``weight_v`` and one gain ``weight_g`` per slice of dim 0."""
    weight = conv.weight.detach()
    del conv.weight
    gain_shape = (weight.shape[0],) + (1,) * (weight.dim() - 1)
    conv.weight_v = nn.Parameter(weight)
    if weight.is_meta:
        conv.weight_g = nn.Parameter(weight.new_empty(gain_shape))
    else:
        conv.weight_g = nn.Parameter(torch.linalg.vector_norm(weight.flatten(1), dim=1).reshape(gain_shape))


def conv_weight(conv: nn.Module) -> Tensor:
    """The weight a (possibly weight-normed) conv applies: ``g * v / ||v||`` or the plain weight.

    On the meta device the direction is returned as is: the reparametrisation has no
    multiply-accumulates, and meta ops are slow enough that skipping it keeps counting quick.
    """
    if "weight_v" not in conv._parameters:
        return conv.weight
    if conv.weight_v.is_meta:
        return conv.weight_v
    return torch._weight_norm(conv.weight_v, conv.weight_g, 0)


class NormedConv1d(nn.Conv1d):
    """Conv1d, weight-normed (``weight_g``, ``weight_v``) unless ``weight_norm`` is False."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1, weight_norm: bool = True) -> None:
        super().__init__(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        if weight_norm:
            weight_normalise(self)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, conv_weight(self), self.bias)


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaveGlowConfig:
    """Constructor arguments of the official ``WaveGlow`` plus rate, sigma and weight norm."""

    n_mels: int = 80
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    n_layers: int = 8  # WN layers
    n_channels: int = 256  # WN channels
    kernel_size: int = 3
    hop_length: int = 256  # the upsampler's stride (fixed in the official code)
    upsample_kernel: int = 1024  # fixed in the official code
    sample_rate: int = 22_050
    sigma: float = 1.0
    weight_norm: bool = True

    def __post_init__(self) -> None:
        if self.n_group % 2 or self.n_channels % 2 or self.kernel_size % 2 == 0:
            raise ValueError("WaveGlow: n_group and n_channels must be even and kernel_size odd")
        if self.hop_length % self.n_group:
            raise ValueError(f"WaveGlow: hop {self.hop_length} must be a multiple of n_group {self.n_group}")

    def flow_channels(self) -> list[int]:
        """Audio channels each flow transforms (8, 8, 8, 8, 6, ... for the published network)."""
        channels, remaining = [], self.n_group
        for k in range(self.n_flows):
            if k % self.n_early_every == 0 and k > 0:
                remaining -= self.n_early_size
            channels.append(remaining)
        return channels


class Invertible1x1Conv(nn.Module):
    """c x c orthonormal mixing of the channels (``conv.weight`` is (c, c, 1), no bias); synthesis
    applies its inverse, computed once and cached like the official ``W_inverse``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, 1, bias=False)
        if not self.conv.weight.is_meta:
            q = torch.linalg.qr(torch.randn(c, c, device=self.conv.weight.device))[0]
            if torch.det(q) < 0:
                q[:, 0] = -q[:, 0]
            with torch.no_grad():
                self.conv.weight.copy_(q.unsqueeze(-1))
        self._inverse: Tensor | None = None
        self._inverse_key: tuple[object, ...] | None = None

    def inverse_weight(self) -> Tensor:
        w = self.conv.weight
        key = (w._version, w.device, w.dtype, None if w.is_meta else w.data_ptr())
        if self._inverse is None or self._inverse_key != key:
            with torch.no_grad():
                matrix = w.squeeze(-1)
                compute = torch.float32 if matrix.dtype in (torch.float16, torch.bfloat16) else matrix.dtype
                inverse = torch.linalg.inv_ex(matrix.to(compute))[0]
            self._inverse, self._inverse_key = inverse.to(w.dtype).unsqueeze(-1), key
        return self._inverse

    def reverse(self, z: Tensor) -> Tensor:
        return F.conv1d(z, self.inverse_weight())


class WN(nn.Module):
    """The coupling network: half the audio channels and the grouped mel -> (b, log s)."""

    def __init__(self, n_in: int, n_cond: int, cfg: WaveGlowConfig) -> None:
        super().__init__()
        ch, wn = cfg.n_channels, cfg.weight_norm
        self.n_channels = ch
        self.start = NormedConv1d(n_in, ch, weight_norm=wn)
        self.cond_layer = NormedConv1d(n_cond, 2 * ch * cfg.n_layers, weight_norm=wn)
        self.in_layers = nn.ModuleList(
            NormedConv1d(ch, 2 * ch, cfg.kernel_size, dilation=2**i, weight_norm=wn) for i in range(cfg.n_layers)
        )
        self.res_skip_layers = nn.ModuleList(
            NormedConv1d(ch, 2 * ch if i < cfg.n_layers - 1 else ch, weight_norm=wn) for i in range(cfg.n_layers)
        )
        self.end = nn.Conv1d(ch, 2 * n_in, 1)  # zero-initialised: each coupling starts as the identity
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, audio: Tensor, cond: Tensor) -> Tensor:
        ch = self.n_channels
        h = self.start(audio)
        cond = self.cond_layer(cond)
        skip: Tensor | int = 0
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            act = in_layer(h) + cond[:, 2 * ch * i : 2 * ch * (i + 1)]
            res_skip = res_skip_layer(torch.tanh(act[:, :ch]) * torch.sigmoid(act[:, ch:]))
            if i < last:
                h = h + res_skip[:, :ch]
                skip = skip + res_skip[:, ch:]
            else:
                skip = skip + res_skip
        return self.end(skip)


class WaveGlow(Vocoder):
    """WaveGlow's synthesis: mel (B, n_mels, F) -> waveform (B, F * hop) (see the module docstring)."""

    def __init__(self, config: WaveGlowConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or WaveGlowConfig()
        self.sample_rate, self.hop_length, self.n_mels = cfg.sample_rate, cfg.hop_length, cfg.n_mels
        self.upsample = nn.ConvTranspose1d(cfg.n_mels, cfg.n_mels, cfg.upsample_kernel, stride=cfg.hop_length)
        self.flow_channels = cfg.flow_channels()
        self.convinv = nn.ModuleList(Invertible1x1Conv(c) for c in self.flow_channels)
        self.WN = nn.ModuleList(WN(c // 2, cfg.n_mels * cfg.n_group, cfg) for c in self.flow_channels)

    def condition(self, mel: Tensor) -> Tensor:
        """Upsampled mel cropped to F * hop samples, folded into groups: (B, n_mels * n_group, F * hop / n_group)."""
        cfg = self.config
        b, n_mels, frames = mel.shape
        cond = self.upsample(mel)[:, :, : frames * cfg.hop_length]  # = infer's crop of kernel - stride samples
        cond = cond.reshape(b, n_mels, -1, cfg.n_group).permute(0, 1, 3, 2)  # channel index: mel * n_group + g
        return cond.reshape(b, n_mels * cfg.n_group, -1)

    def forward(self, mel: Tensor) -> Tensor:
        check_mel(self, mel)
        cfg = self.config
        cond = self.condition(mel)
        b, _, width = cond.shape
        audio = cfg.sigma * torch.randn(b, self.flow_channels[-1], width, device=mel.device, dtype=mel.dtype)
        for k in reversed(range(cfg.n_flows)):
            n_half = audio.shape[1] // 2
            audio_0, audio_1 = audio[:, :n_half], audio[:, n_half:]
            out = self.WN[k](audio_0, cond)
            b_shift, log_s = out[:, :n_half], out[:, n_half:]
            audio = self.convinv[k].reverse(torch.cat([audio_0, (audio_1 - b_shift) / torch.exp(log_s)], 1))
            if k % cfg.n_early_every == 0 and k > 0:
                early = cfg.sigma * torch.randn(b, cfg.n_early_size, width, device=mel.device, dtype=mel.dtype)
                audio = torch.cat([early, audio], 1)
        return audio.permute(0, 2, 1).reshape(b, -1)


# ------------------------------------------------------------------------------------------------
def _follow_up(size: str, channels: int, params: int, paper_params: float | None, note: str) -> VocoderSpec:
    cfg = WaveGlowConfig(n_channels=channels, sample_rate=16_000, sigma=1.0, weight_norm=True)
    return VocoderSpec(
        name=f"waveglow-{size}",
        family="WaveGlow",
        group="follow-up",
        build=lambda: WaveGlow(cfg),
        official_params=params,
        paper_params=paper_params,
        paper=FOLLOW_UP_PAPER,
        code=f"{FOLLOW_UP_CODE} (src/models/waveglow/{size}.yaml, waveglow.py)",
        notes=(
            f"{size}.yaml: 16 kHz, stride 256, 80 mels, 12 flows, n_group 8, 2 early channels every 4 flows, "
            f"WN 8 layers x {channels} channels, kernel 3; weight norm on (generate() calls infer(), sigma 1.0); "
            f"the ConvTranspose1d(80, 80, 1024, stride 256) upsampler is inside the module. {note}"
        ),
    )


VARIANTS: tuple[VocoderSpec, ...] = (
    _follow_up("small", 64, 17_595_752, None, ""),
    _follow_up("medium", 128, 34_830_440, None, ""),
    _follow_up(
        "large",
        256,
        87_879_272,
        87.73,
        "default.yaml equals large.yaml. The network is NVIDIA's published one; 87.73 M is the HiFi-GAN "
        "paper's figure for it, counted without the 147,456 weight-norm gains.",
    ),
    VocoderSpec(
        name="waveglow",
        family="WaveGlow",
        group="reference",
        build=lambda: WaveGlow(WaveGlowConfig(sample_rate=22_050, sigma=0.6, weight_norm=False)),
        official_params=87_731_816,
        paper_params=87.73,
        paper=(
            "Prenger, Valle & Catanzaro, 'WaveGlow: a flow-based generative network for speech synthesis', "
            "ICASSP 2019; size as printed in Kong, Kim & Bae, 'HiFi-GAN', NeurIPS 2020, Table 1"
        ),
        code=f"{NVIDIA_CODE} (glow.py, config.json, inference.py)",
        notes=(
            "config.json: 22.05 kHz, hop 256, 80 mels, 12 flows, n_group 8, 2 early channels every 4 flows, "
            "WN 8 layers x 256 channels (the published waveglow_256channels checkpoint; the paper text's 512 "
            "would give 268,294,760), kernel 3; weight norm removed as inference.py does before infer(), which "
            "is exactly the HiFi-GAN paper's 87.73 M; sigma 0.6 as in the README's example; upsampler inside."
        ),
    ),
)
