"""Vocos (Siuzdak, ICLR 2024), the mel variant: a ConvNeXt backbone at frame rate and an inverse STFT.

An architecture replica for cost measurement (random weights), written from the official code,
``gemelo-ai/vocos`` (``vocos/models.py`` ``VocosBackbone``, ``vocos/modules.py`` ``ConvNeXtBlock``,
``vocos/heads.py`` ``ISTFTHead``, ``vocos/spectral_ops.py`` ``ISTFT``, ``vocos/pretrained.py``
``Vocos.decode``) with ``configs/vocos.yaml`` (the released ``charactr/vocos-mel-24khz``): 24 kHz,
100 log-mel bands, n_fft = win = 1024, hop 256.

Generator (``Vocos.decode``): ``embed`` Conv1d(100 -> 512, k 7, pad 3), LayerNorm(512); 8 ConvNeXt
blocks, each depthwise Conv1d(k 7) -> LayerNorm -> Linear(512 -> 1536) -> GELU -> Linear(1536 -> 512)
-> layer scale ``gamma`` (init 1 / 8) with a residual around the block; a final LayerNorm; the head
Linear(512 -> n_fft + 2 = 1026) split into log-magnitude and phase (513 bins each),
``S = clip(exp(mag), max=100) * (cos p + i sin p)``, then the inverse STFT (Hann window). No weight
norm anywhere, no upsampling layer: the whole network runs at the frame rate (93.75 Hz).

Parameter count (official classes built from ``configs/vocos.yaml`` and counted, reproduced exactly,
``tests/test_vocoders_current.py``): embed 358,912 + norm 1,024 + 8 x 1,580,544 + final norm 1,024 +
head 526,338 = 13,531,650; the mel feature extractor (``torchaudio`` ``MelSpectrogram``) holds only
buffers. The paper and the README print 13.5 M (rounded to one decimal). With the official module's
state dict loaded (keys match one to one), the replica's output equals the official ``decode``'s exactly.

Cost: ``FlopCounterMode`` counts the convolutions and linear layers (essentially all of the
arithmetic) but **not** the FFT of the inverse STFT (no ``aten._fft_c2r`` formula is registered, so
it counts 0 for it); nor is it counted analytically here. For scale: one 1024-point real inverse
FFT per frame is about 2.5 n log2 n ~ 26 kFLOP, against ~27 MFLOP per frame of network, i.e. < 0.1 %.
Time and energy measurements do include it.

Decisions on the uncertain points:

* Head padding: ``configs/vocos.yaml`` sets ``padding: center`` for both the feature extractor and
  the ISTFT head (the ``"same"`` default of ``ISTFTHead`` is *not* what the mel model uses), so the
  head falls back to ``torch.istft(..., center=True)``, as the official code does. :class:`VocosConfig`
  keeps ``padding="same"`` (the official fold-based ISTFT) as an option.
* Output length: with ``center`` padding the official decode of T frames gives (T - 1) x hop samples
  (checked by running the official code: 5 frames -> 1,024 samples); the official feature extractor
  (``center=True``) turns a clip of L samples into 1 + L // hop frames, so a clip of T x hop samples is
  T + 1 frames and decodes back to exactly T x hop samples. :meth:`Vocos.forward` therefore repeats the
  last mel frame once (T -> T + 1 frames) and decodes: no crop, no zero fill, and the cost is that of
  copy-synthesis of a T x hop clip. ``torch.istft`` needs at least two frames, so one input frame is
  enough (``min_frames`` 1). With ``padding="same"`` the official ISTFT already gives T x hop samples
  and no frame is added.
* ``Vocos.decode`` is ``@torch.inference_mode()`` in the official code; here the caller chooses
  (``torch.no_grad`` / ``inference_mode``) as for every vocoder of the table.
* Weight initialisation follows the backbone's ``_init_weights`` (truncated normal, std 0.02, zero
  bias) and PyTorch's defaults for the head; the values do not change the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec

_PAPER = (
    "Siuzdak, 'Vocos: Closing the gap between time-domain and Fourier-based neural vocoders for high-quality "
    "audio synthesis', ICLR 2024"
)
_CODE = "github.com/gemelo-ai/vocos @ c859e3b7b534f3776a357983029d34170ddd6fc3, vocos/*.py + configs/vocos.yaml"


@dataclass(frozen=True)
class VocosConfig:
    """The ``backbone`` and ``head`` init arguments of ``configs/vocos.yaml`` plus the data's rate."""

    n_mels: int = 100  # backbone input_channels
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    n_fft: int = 1024  # win_length = n_fft in ISTFTHead
    hop_length: int = 256
    padding: str = "center"  # the head's (and feature extractor's) padding in configs/vocos.yaml
    sample_rate: int = 24_000
    layer_scale_init_value: float | None = None  # None: 1 / num_layers, as VocosBackbone

    def __post_init__(self) -> None:
        if self.padding not in ("center", "same"):
            raise ValueError(f"Vocos: padding must be 'center' or 'same', got {self.padding!r}")
        if (self.n_fft - self.hop_length) % 2:
            raise ValueError("Vocos: n_fft - hop_length must be even for 'same' padding to trim evenly")


#: the released mel model, ``configs/vocos.yaml``
MEL_24KHZ = VocosConfig()


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, inverted-bottleneck MLP, layer scale, residual (ConvNeXt in 1-D).

    The two pointwise convolutions are ``nn.Linear`` on (B, T, C), as in the official block, so the
    parameter names and the matmuls (hence the counted FLOPs) are the official ones.
    """

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        # The official block drops gamma for a non-positive init value; the mel model's is 1/8.
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.transpose(1, 2)


class VocosBackbone(nn.Module):
    """(B, n_mels, T) -> (B, T, dim): embed, LayerNorm, ConvNeXt blocks, final LayerNorm (no adanorm)."""

    def __init__(self, cfg: VocosConfig) -> None:
        super().__init__()
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        scale = cfg.layer_scale_init_value or 1 / cfg.num_layers
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, scale) for _ in range(cfg.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Inverse STFT with a Hann window (win = n_fft): ``"center"`` or ``"same"`` padding.

    ``"center"`` is ``torch.istft(center=True)``, as the official module falls back to: (T - 1) x hop
    samples. ``"same"`` is the official windowed inverse FFT, overlap-add by ``fold``, a
    (win - hop) / 2 trim at each end and division by the summed squared window: T x hop samples.
    """

    def __init__(self, n_fft: int, hop_length: int, padding: str) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = padding
        # A buffer, as the official ISTFT registers it: it moves with the module and is not a parameter.
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: Tensor) -> Tensor:
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.n_fft, self.window, center=True)
        frames = spec.shape[-1]
        trim = (self.n_fft - self.hop_length) // 2
        length = (frames - 1) * self.hop_length + self.n_fft
        ifft = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        fold = dict(output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        y = F.fold(ifft, **fold)[:, 0, 0, trim:-trim]
        envelope = F.fold(self.window.square().expand(1, frames, -1).transpose(1, 2), **fold)[0, 0, 0, trim:-trim]
        return y / envelope


class ISTFTHead(nn.Module):
    """(B, T, dim) -> waveform: a linear layer to log-magnitude and phase, then the inverse STFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, padding)

    def forward(self, x: Tensor) -> Tensor:
        mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)
        # The official safeguard: magnitudes capped at 100 after the exponential.
        mag = torch.exp(mag).clamp(max=1e2)
        return self.istft(torch.complex(mag * torch.cos(phase), mag * torch.sin(phase)))


class Vocos(Vocoder):
    """mel (B, n_mels, T) -> waveform (B, T * hop_length); see the module docstring for the length."""

    def __init__(self, config: VocosConfig = MEL_24KHZ) -> None:
        super().__init__()
        cfg = self.config = config
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        # Names as in the official Vocos(feature_extractor, backbone, head); the parameter-free mel
        # feature extractor is not needed to decode a mel and is left out.
        self.backbone = VocosBackbone(cfg)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, cfg.hop_length, cfg.padding)

    def forward(self, mel: Tensor) -> Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"Vocos: expected a mel of shape (batch, {self.n_mels}, frames), got {tuple(mel.shape)}")
        if mel.shape[-1] < self.min_frames:
            raise ValueError(f"Vocos: {mel.shape[-1]} mel frame(s), fewer than the {self.min_frames} it needs")
        if self.config.padding == "center":
            # T frames are a T x hop clip's mel less its last frame (1 + L // hop frames for L samples):
            # restore one, so that the official decode returns exactly T x hop samples.
            mel = torch.cat([mel, mel[..., -1:]], dim=-1)
        return self.head(self.backbone(mel))


VARIANTS: tuple[VocoderSpec, ...] = (
    VocoderSpec(
        name="vocos",
        family="Vocos",
        group="current",
        build=lambda: Vocos(MEL_24KHZ),
        official_params=13_531_650,
        paper_params=13.5,
        paper=_PAPER,
        code=_CODE,
        notes=(
            "mel model (charactr/vocos-mel-24khz): 24 kHz, 100 mels, hop 256, n_fft 1024, ConvNeXt 512/1536 x 8; "
            "ISTFT head with center padding as configs/vocos.yaml, the last mel frame repeated once so that T "
            "frames give T x hop samples (a T x hop clip's own mel has T + 1 frames); FlopCounterMode does not "
            "count the inverse FFT"
        ),
    ),
)
