"""WaveFlow as the follow-up paper's code configures it (synthesis pass only), in three sizes.

A replica for cost measurement (time, energy, FLOPs) of one synthesis from a mel spectrogram;
weights are random and the output is noise. It stands apart from the project's own WaveFlow in
:mod:`waveflow.model` (the zoo does not import it) because it follows a different code base.

Sources: the follow-up paper's code, ``ConstanceDws/neural-audio-energy`` @
00428c01ffe6e131dc40dc9c6e7195c925cb12ab: ``src/models/waveflow/flow.py`` (L0SG/WaveFlow's
``WaveFlowModel``, ``Flow``, ``WaveFlowCoupling2D``, ``Wavenet2D``, ``ResBlock2D``, ``Conv2D``,
``ZeroConv2d``; synthesis by ``reverse_fast``), ``model.py`` (``generate`` = ``reverse_fast``
at temperature 1.0, upscaling factor ``mel_stride // 16`` = 16) and ``{small,medium,large}.yaml``:
16 kHz, mel stride 256, 80 mels, 8 flows of 8 layers, one height-dilation cycle per layer
(``layers_per_dilation_h_cycle`` 1, i.e. height dilation 1 everywhere), no bipartization, and

* small: height 8, 64 residual channels (``default.yaml`` equals ``small.yaml``);
* medium: height 16, 96 channels;
* large: height 16, 128 channels.

These are rows WF1, WF3 and WF4 of the WaveFlow paper's Table 2 (Ping, Peng, Zhao & Song, ICML
2020), which prints 5.91 M, 12.78 M and 22.25 M for them; L0SG's modules come out 0.6-0.7 %
larger (below).

Architecture:

* mel upsampler inside the generator: 2 x [weight-normed ConvTranspose2d(1 -> 1, kernel
  (3, 32), stride (1, 16), padding (1, 8)) + LeakyReLU(0.4)]: (80, F) -> (80, 256 F);
* audio and conditioning are squeezed column-major to height h: (B, 1, h, 256 F / h) and
  (B, 80, h, 256 F / h);
* each flow: an affine coupling over the rows (row 0 passes, row i gets log s and t from rows
  < i and the conditioning of row i) computed by a 2-D WaveNet (weight-normed 1x1 front conv
  1 -> r; per layer a weight-normed conv kernel 3 x 3 (r -> 2r, height dilation 1, causal along
  the height, width dilation 2^i non-causal), a weight-normed 1x1 conditioning conv 80 -> 2r,
  tanh x sigmoid and a weight-normed 1x1 res/skip conv r -> 2r; the skips are summed) and a
  zero-initialised 1x1 projection r -> 2 (log s, t) without weight norm; then the rows of x and
  of the conditioning are flipped.

Synthesis (``forward``, as ``reverse_fast``): upsample and squeeze the mel, draw z ~ N(0,
sigma^2) of shape (B, 1, h, W) and, for the flows in reverse, flip z and the conditioning,
compute the 8 layers' conditioning projections once for all rows, then run the height-wise
autoregression: h - 1 steps, each one WaveNet pass on the newest row (each layer's dilated conv
sees its 2 cached previous rows and the new one, no height padding) and
``x_i = (z_i - t_i) exp(-log s_i)``. Unsqueeze back to (B, 256 F).

Parameters (the official ``WaveFlowModel`` instantiated as ``model.py`` does, in a scratch
directory, counted with ``parameters()``; the upsampler's 196 included, 202 weight-normed
convs each with a ``weight_g`` gain per output channel): small **5,950,164**, medium
**12,857,300**, large **22,385,876**.

Checked against the official code (scratch copies, float64, random weights, the same z): with
the official ``state_dict`` loaded (names mapped: ``coupling.`` dropped, ``front_conv.0.conv``,
``filter_gate_conv.conv`` and ``proj_log_s_t.conv`` flattened) the replica's output equals the
official ``reverse`` (which does not crop) to 1e-15, for small and medium.

Decisions on the uncertain points:

* ``reverse_fast`` crops the conditioning's last ``(2 s)^2 - s^2`` = 768 samples (WaveGlow's
  transposed-conv overhang trim, carried over; ``reverse`` has it commented out). This
  upsampler has no overhang (it gives exactly 256 F samples), so the crop only drops the last 3
  frames; the replica keeps all 256 F samples, as the vocoder contract requires, and so needs
  1 frame, not 4.
* Conditioning projections: ``reverse_fast`` expects them fused into one un-normalised conv by
  ``fuse_conditioning_layers``, which the follow-up never calls (its ``generate`` would stop at
  the missing attribute). The replica keeps the 8 weight-normed per-layer convs the follow-up's
  module has (and counts) and runs them once per flow before the row loop, as ``reverse`` does:
  the same multiply-accumulates as the fused conv.
* Weight norm stays on (the follow-up never removes it), so every conv call recomputes
  ``g v / ||v||``, as the legacy ``nn.utils.weight_norm`` hook does.
* The rows are gathered in a list and concatenated once per flow (``reverse_fast`` concatenates
  after every row; same result, less copying).
* Height dilations above 1 (not used by any configuration) get a row cache of ``dilation x 2``
  rows, which is what a correct conv queue needs (``reverse_fast`` always keeps 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec, check_mel
from .waveglow import FOLLOW_UP_CODE, FOLLOW_UP_PAPER, conv_weight, weight_normalise


@dataclass(frozen=True)
class WaveFlowConfig:
    """Arguments of the follow-up's ``WaveFlowModel`` (``model.py`` / yaml) plus rate and temperature."""

    n_mels: int = 80
    res_channels: int = 64
    n_height: int = 8
    n_flows: int = 8
    n_layers: int = 8
    layers_per_dilation_h_cycle: int = 1
    bipartize: bool = False
    kernel_size: int = 3
    upscaling: int = 16  # mel_stride // 16, used twice
    leaky_slope: float = 0.4
    sample_rate: int = 16_000
    sigma: float = 1.0  # temperature of reverse_fast

    @property
    def hop_length(self) -> int:
        return self.upscaling**2

    def __post_init__(self) -> None:
        if self.hop_length % self.n_height:
            raise ValueError(f"WaveFlow: hop {self.hop_length} must be a multiple of the height {self.n_height}")
        if self.bipartize and self.n_height % 2:
            raise ValueError("WaveFlow: bipartization needs an even height")

    def dilation_h(self, layer: int) -> int:
        return 2 ** (layer % self.layers_per_dilation_h_cycle)


class NormedConv2d(nn.Conv2d):
    """Weight-normed Conv2d without height padding (``Conv2D`` pads the height causally for the
    density pass; the row-wise synthesis feeds cached rows instead), width padded to keep the width."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation_h: int = 1, dilation_w: int = 1) -> None:
        pad_w = dilation_w * (kernel - 1) // 2
        super().__init__(c_in, c_out, kernel, dilation=(dilation_h, dilation_w), padding=(0, pad_w))
        weight_normalise(self)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, conv_weight(self), self.bias)


class NormedConvTranspose2d(nn.ConvTranspose2d):
    """Weight-normed ConvTranspose2d (the gain runs over dim 0, the single input channel)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        weight_normalise(self)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.conv_transpose2d(
            x, conv_weight(self), self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


class ResBlock2D(nn.Module):
    """One gated layer of the 2-D WaveNet (names as ``ResBlock2D``)."""

    def __init__(self, cfg: WaveFlowConfig, layer: int) -> None:
        super().__init__()
        r = cfg.res_channels
        self.channels = r
        self.cache_rows = cfg.dilation_h(layer) * (cfg.kernel_size - 1)
        self.filter_gate_conv = NormedConv2d(r, 2 * r, cfg.kernel_size, cfg.dilation_h(layer), 2**layer)
        self.filter_gate_conv_c = NormedConv2d(cfg.n_mels, 2 * r)
        self.res_skip_conv = NormedConv2d(r, 2 * r)

    def step(self, rows: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """``rows``: (B, r, cache_rows + 1, W), the cached rows and the new one; ``cond``: this
        layer's conditioning of the new row. Returns the new row's residual output and skip."""
        r = self.channels
        act = self.filter_gate_conv(rows) + cond
        res_skip = self.res_skip_conv(torch.tanh(act[:, :r]) * torch.sigmoid(act[:, r:]))
        return rows[:, :, -1:] + res_skip[:, :r], res_skip[:, r:]


class Wavenet2D(nn.Module):
    def __init__(self, cfg: WaveFlowConfig) -> None:
        super().__init__()
        self.front_conv = NormedConv2d(1, cfg.res_channels)
        self.res_blocks = nn.ModuleList(ResBlock2D(cfg, i) for i in range(cfg.n_layers))


class Coupling(nn.Module):
    """``WaveFlowCoupling2D``: the 2-D WaveNet and the zero-initialised (log s, t) projection."""

    def __init__(self, cfg: WaveFlowConfig) -> None:
        super().__init__()
        self.net = Wavenet2D(cfg)
        self.proj_log_s_t = nn.Conv2d(cfg.res_channels, 2, 1)
        nn.init.zeros_(self.proj_log_s_t.weight)
        nn.init.zeros_(self.proj_log_s_t.bias)

    def reverse(self, z: Tensor, cond: Tensor) -> Tensor:
        """Invert the coupling row by row: z (B, 1, h, W) and the conditioning (B, n_mels, h, W)."""
        blocks = self.net.res_blocks
        c_cache = [block.filter_gate_conv_c(cond) for block in blocks]  # once per flow, for all rows
        b, _, height, width = z.shape
        r = blocks[0].channels
        caches = [z.new_zeros(b, r, block.cache_rows, width) for block in blocks]
        row = z[:, :, :1]
        rows = [row]
        for i in range(1, height):
            h = self.net.front_conv(row)
            skip: Tensor | int = 0
            for j, block in enumerate(blocks):
                window = torch.cat([caches[j], h], 2)
                caches[j] = window[:, :, 1:]
                h, s = block.step(window, c_cache[j][:, :, i : i + 1])
                skip = skip + s
            log_s_t = self.proj_log_s_t(skip)
            row = (z[:, :, i : i + 1] - log_s_t[:, 1:]) * torch.exp(-log_s_t[:, :1])
            rows.append(row)
        return torch.cat(rows, 2)


def bipartize_reverse_order(x: Tensor) -> Tensor:
    """Flip each half of the rows separately (WaveFlow's permutation (b))."""
    b, c, h, w = x.shape
    return x.reshape(b, c, 2, h // 2, w).flip(3).reshape(b, c, h, w)


class WaveFlow(Vocoder):
    """The follow-up's WaveFlow synthesis: mel (B, n_mels, F) -> waveform (B, 256 F)."""

    def __init__(self, config: WaveFlowConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or WaveFlowConfig()
        self.sample_rate, self.hop_length, self.n_mels = cfg.sample_rate, cfg.hop_length, cfg.n_mels
        self.flows = nn.ModuleList(Coupling(cfg) for _ in range(cfg.n_flows))
        s = cfg.upscaling
        self.upsample_conv = nn.ModuleList()
        for _ in range(2):
            self.upsample_conv.append(NormedConvTranspose2d(1, 1, (3, 2 * s), padding=(1, s // 2), stride=(1, s)))
            self.upsample_conv.append(nn.LeakyReLU(cfg.leaky_slope))

    def permute(self, x: Tensor, flow: int) -> Tensor:
        if self.config.bipartize and flow >= self.config.n_flows // 2:
            return bipartize_reverse_order(x)
        return x.flip(2)

    def condition(self, mel: Tensor) -> Tensor:
        """Upsampled, squeezed conditioning: (B, n_mels, h, F * hop / h), ``c[..., i, j]`` at sample j h + i."""
        c = mel.unsqueeze(1)
        for layer in self.upsample_conv:
            c = layer(c)
        b, _, n_mels, samples = c.shape
        return c.reshape(b, n_mels, samples // self.config.n_height, self.config.n_height).transpose(2, 3)

    def forward(self, mel: Tensor) -> Tensor:
        check_mel(self, mel)
        cfg = self.config
        cond = self.condition(mel)
        b, _, height, width = cond.shape
        x = cfg.sigma * torch.randn(b, 1, height, width, device=mel.device, dtype=mel.dtype)
        for k in reversed(range(cfg.n_flows)):
            cond = self.permute(cond, k)
            x = self.flows[k].reverse(self.permute(x, k), cond)
        return x.transpose(2, 3).reshape(b, -1)


def _follow_up(size: str, height: int, channels: int, params: int, paper_params: float, row: str) -> VocoderSpec:
    cfg = WaveFlowConfig(res_channels=channels, n_height=height)
    return VocoderSpec(
        name=f"waveflow-{size}",
        family="WaveFlow",
        group="follow-up",
        build=lambda: WaveFlow(cfg),
        official_params=params,
        paper_params=paper_params,
        paper=(
            f"{FOLLOW_UP_PAPER}; size as printed for the same configuration (row {row}) in Ping, Peng, Zhao & Song, "
            "'WaveFlow: a compact flow-based model for raw audio', ICML 2020, Table 2"
        ),
        code=f"{FOLLOW_UP_CODE} (src/models/waveflow/{size}.yaml, flow.py, model.py)",
        notes=(
            f"{size}.yaml: 16 kHz, stride 256, 80 mels, height {height}, {channels} residual channels, 8 flows x 8 "
            "layers, height dilation 1, rows flipped after every flow; synthesis as reverse_fast (row-wise, one "
            "WaveNet pass per row per flow) with all 256 F samples kept (no 768-sample crop) and the 8 per-layer "
            "weight-normed conditioning convs run once per flow (not fused); weight norm on; the 2-layer "
            "ConvTranspose2d upsampler (196 parameters) is inside the module."
            + (" default.yaml equals small.yaml." if size == "small" else "")
        ),
    )


VARIANTS: tuple[VocoderSpec, ...] = (
    _follow_up("small", 8, 64, 5_950_164, 5.91, "WF1, h=8, r=64"),
    _follow_up("medium", 16, 96, 12_857_300, 12.78, "WF3, h=16, r=96"),
    _follow_up("large", 16, 128, 22_385_876, 22.25, "WF4, h=16, r=128"),
)
