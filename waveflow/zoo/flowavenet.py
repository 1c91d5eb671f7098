"""FloWaveNet (Kim, Lee, Song, Kim & Yoon, ICML 2019), the paper's 8-block x 6-flow model.

An architecture replica for compute and energy measurement: it has the official flows,
WaveNets, upsampler, loss and step, but it is **not** a trained vocoder (its output is noise).

Source: ``ksw0306/FloWaveNet`` (PyTorch): ``model.py`` (``ActNorm`` :10, ``AffineCoupling`` :60,
``Flow`` :105, ``Block`` :138, ``Flowavenet`` :196-264), ``modules.py`` (``Conv`` :6,
``ZeroConv1d`` :26, ``ResBlock`` :41, ``Wavenet`` :83), ``train.py`` (Adam 1e-3 halved every
200k iterations, gradient-norm clipping at 1, batch 8), ``data.py`` (15,872-sample chunks).
README configuration: ``--n_block 8 --n_flow 6 --n_layer 2 --block_per_split 4``, 256 WaveNet
channels, 80-band mel conditioning at 22,050 Hz with a hop of 256.

Architecture:

* mel upsampler: 2 x [weight-normed ConvTranspose2d(1 -> 1, kernel (3, 32), stride (1, 16),
  padding (1, 8)) + LeakyReLU(0.4)]: 80 x F frames -> 80 x 256 F samples;
* 8 blocks; each squeezes x and the conditioning (C, T) -> (2C, T / 2) and runs 6 flows of
  [ActNorm (data-initialised on the first batch), affine coupling, swap of the channel
  halves of x and of the conditioning]; after block 4 half the channels are factored out
  and a prior WaveNet predicts their Gaussian mean and log-std. x channels 2, 4, 8, 16 |
  16, 32, 64, 128; conditioning channels 160 ... 20,480;
* coupling WaveNet (non-causal, kernel 3, 2 layers with dilation 1 and 2, 256 channels):
  weight-normed front conv (k 3, C/2 -> 256) + ReLU; per layer weight-normed filter and gate
  convs (k 3) plus 1x1 projections of the first half of the conditioning, tanh x sigmoid,
  residual 1x1 ((x + res) sqrt(0.5)) and skip 1x1; head ReLU, 1x1, ReLU, zero-initialised
  1x1 scaled by exp(3 s). The prior WaveNet is the same on the full conditioning.

Parameters (the official ``model.py`` instantiated with the README configuration, see
``waveflow/zoo/REFERENCES.md``): **182,644,788**
including 175,618 weight-norm gains (182,469,170 without); reproduced exactly here by
:class:`WNConv1d` and :class:`WNConvTranspose2d` (one gain per output channel, the legacy
``nn.utils.weight_norm`` the official code uses).

MACs: 8.80 M per audio sample, in the density direction and in sampling alike (every
WaveNet runs once either way), i.e. 139.7 G for one 15,872-sample chunk and 194 G per second
of 22,050 Hz audio; the conditioning 1x1 projections of the deep blocks dominate.

One training step: a density pass (log p(z) + log det, divided by the samples) and its
backward on 8 chunks of 15,872 samples (62 mel frames), gradient-norm clipping at 1, Adam,
and the step-LR scheduler.

Inference (``forward``): ``reverse`` from z ~ N(0, 0.8^2) (temperature 0.8, paper section
4.4) given a mel spectrogram: 256 samples per mel frame.

Decisions on the uncertain points (``waveflow/zoo/REFERENCES.md``):

* Chunk length: the code's 15,872 samples (16,000 rounded down to whole hops), not the
  paper's 16,000.
* Schedule: 700k iterations at batch 8 on one V100 (11.35 days at the paper's measured
  0.714 it/s, matching the seed paper's 272 h), not the plural "V100 GPUs".
* ActNorm's data-dependent initialisation runs on the first density pass, as in the code;
  ``reverse`` on an uninitialised model uses the identity initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Device, ZooModel, check_batch, count_parameters, scale_width


@dataclass(frozen=True)
class FloWaveNetConfig:
    """README configuration of ``train.py``."""

    n_block: int = 8
    n_flow: int = 6
    n_layer: int = 2
    block_per_split: int = 4
    channels: int = 256  # WaveNet residual = gate = skip channels
    n_mels: int = 80
    hop: int = 256
    chunk_samples: int = 15_872  # 62 frames: 16,000 rounded down to whole hops
    batch_size: int = 8
    lr: float = 1e-3
    lr_step: int = 200_000
    lr_gamma: float = 0.5
    clip_norm: float = 1.0
    temperature: float = 0.8
    sample_rate: int = 22_050

    def scaled(self, width_scale: float) -> FloWaveNetConfig:
        return replace(self, channels=scale_width(self.channels, width_scale))

    @classmethod
    def tiny(cls) -> FloWaveNetConfig:
        """16 WaveNet channels, 8 mel bands, batch 2, 2,048-sample chunks; all 8 x 6 flows kept."""
        return replace(cls().scaled(1 / 16), n_mels=8, batch_size=2, chunk_samples=2_048)

    def check_samples(self, n_samples: int) -> None:
        """Audio must be whole hops (which also makes it divisible by the 2^8 squeezes)."""
        unit = max(self.hop, 2**self.n_block)
        if n_samples < unit or n_samples % unit:
            raise ValueError(
                f"FloWaveNet: audio must be a positive multiple of the {unit}-sample hop, got {n_samples} samples"
            )


def _weight_normalise(conv: nn.Module) -> None:
    """Replace ``conv.weight`` by a Kaiming-initialised direction ``weight_v`` and gain ``weight_g``."""
    weight = conv.weight.detach()
    del conv.weight
    if weight.is_meta:  # shapes only: initialising on meta would just trace Python decompositions
        conv.weight_v = nn.Parameter(torch.empty_like(weight))
        conv.weight_g = nn.Parameter(weight.new_empty((weight.shape[0],) + (1,) * (weight.dim() - 1)))
        return
    nn.init.kaiming_normal_(weight)
    conv.weight_v = nn.Parameter(weight.clone())
    conv.weight_g = nn.Parameter(torch.norm_except_dim(weight, 2, 0))


def _normalised_weight(conv: nn.Module) -> Tensor:
    """``g * v / ||v||``. On meta the direction is used as is: the reparametrisation has no
    multiply-accumulates, and skipping it keeps cost counting fast (meta ops run in Python)."""
    if conv.weight_v.is_meta:
        return conv.weight_v
    return torch._weight_norm(conv.weight_v, conv.weight_g, 0)


class WNConv1d(nn.Conv1d):
    """Conv1d with the legacy ``nn.utils.weight_norm`` the official code uses.

    The weight is ``weight_g * weight_v / ||weight_v||`` (one gain per output channel),
    recomputed at every forward by one fused op. Written as a subclass rather than with
    ``torch.nn.utils.parametrizations.weight_norm`` because the latter builds a new class
    per module and dispatches several Python-level ops per access, which made building and
    cost-counting the 688 weight-normed convolutions of this model take seconds.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        _weight_normalise(self)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, _normalised_weight(self), self.bias)


class WNConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d with legacy weight norm over dim 0 (the mel upsampler)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        _weight_normalise(self)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.conv_transpose2d(
            x,
            _normalised_weight(self),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


def _wn_conv1d(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Module:
    """``modules.Conv`` (non-causal): Kaiming-initialised, weight-normed Conv1d."""
    return WNConv1d(c_in, c_out, kernel, dilation)


class ZeroConv1d(nn.Module):
    """Zero-initialised 1x1 conv whose output is scaled by exp(3 s) per channel."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scale = nn.Parameter(torch.zeros(1, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(self.scale * 3.0)


class ResBlock(nn.Module):
    """Gated residual layer with local conditioning, residual and skip outputs."""

    def __init__(self, channels: int, cin: int, dilation: int) -> None:
        super().__init__()
        self.filter_conv = _wn_conv1d(channels, channels, 3, dilation)
        self.gate_conv = _wn_conv1d(channels, channels, 3, dilation)
        self.res_conv = _wn_conv1d(channels, channels, 1)
        self.skip_conv = _wn_conv1d(channels, channels, 1)
        self.filter_conv_c = _wn_conv1d(cin, channels, 1)
        self.gate_conv_c = _wn_conv1d(cin, channels, 1)

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        h_filter = self.filter_conv(x) + self.filter_conv_c(c)
        h_gate = self.gate_conv(x) + self.gate_conv_c(c)
        h = torch.tanh(h_filter) * torch.sigmoid(h_gate)
        return (x + self.res_conv(h)) * math.sqrt(0.5), self.skip_conv(h)


class WaveNet(nn.Module):
    """``modules.Wavenet`` with ``num_blocks=1``: front conv, gated layers, skip head."""

    def __init__(self, c_in: int, c_out: int, cin: int, channels: int, n_layer: int) -> None:
        super().__init__()
        self.front = _wn_conv1d(c_in, channels, 3)
        self.layers = nn.ModuleList(ResBlock(channels, cin, 2**i) for i in range(n_layer))
        self.head = _wn_conv1d(channels, channels, 1)
        self.out = ZeroConv1d(channels, c_out)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = F.relu(self.front(x))
        skip = 0.0
        for layer in self.layers:
            h, s = layer(h, c)
            skip = skip + s
        return self.out(F.relu(self.head(F.relu(skip))))


class ActNorm(nn.Module):
    """Per-channel affine normalisation, initialised from the first batch's statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1))
        self.scale = nn.Parameter(torch.ones(1, channels, 1))
        self.initialized = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.initialized:
            with torch.no_grad():
                flat = x.transpose(0, 1).reshape(x.shape[1], -1)
                self.loc.copy_(-flat.mean(1).view(1, -1, 1))
                self.scale.copy_(1.0 / (flat.std(1).view(1, -1, 1) + 1e-6))
            self.initialized = True
        logdet = torch.log(torch.abs(self.scale)).sum() * x.shape[0] * x.shape[2]
        return self.scale * (x + self.loc), logdet

    def reverse(self, y: Tensor) -> Tensor:
        return y / self.scale - self.loc


def _swap(x: Tensor) -> Tensor:
    a, b = x.chunk(2, 1)
    return torch.cat([b, a], 1)


class Flow(nn.Module):
    """ActNorm -> affine coupling (WaveNet on x_a and c_a) -> swap halves of x and c."""

    def __init__(self, channels: int, cin: int, cfg: FloWaveNetConfig) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.net = WaveNet(channels // 2, channels, cin // 2, cfg.channels, cfg.n_layer)

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, logdet = self.actnorm(x)
        x_a, x_b = x.chunk(2, 1)
        log_s, t = self.net(x_a, c.chunk(2, 1)[0]).chunk(2, 1)
        x_b = (x_b - t) * torch.exp(-log_s)
        return _swap(torch.cat([x_a, x_b], 1)), _swap(c), logdet - log_s.sum()

    def reverse(self, y: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        y, c = _swap(y), _swap(c)
        y_a, y_b = y.chunk(2, 1)
        log_s, t = self.net(y_a, c.chunk(2, 1)[0]).chunk(2, 1)
        x = torch.cat([y_a, y_b * torch.exp(log_s) + t], 1)
        return self.actnorm.reverse(x), c


def _squeeze(x: Tensor) -> Tensor:
    """(B, C, T) -> (B, 2C, T / 2), adjacent samples into channels (official ordering)."""
    b, ch, t = x.shape
    return x.view(b, ch, t // 2, 2).permute(0, 1, 3, 2).reshape(b, 2 * ch, t // 2)


def _unsqueeze(x: Tensor) -> Tensor:
    b, ch, t = x.shape
    return x.view(b, ch // 2, 2, t).permute(0, 1, 3, 2).reshape(b, ch // 2, 2 * t)


def _gaussian_log_p(x: Tensor, mean: Tensor, log_sd: Tensor) -> Tensor:
    return -0.5 * math.log(2 * math.pi) - log_sd - 0.5 * (x - mean) ** 2 / torch.exp(2 * log_sd)


class Block(nn.Module):
    """Squeeze, ``n_flow`` flows, and (for split blocks) the factored-out half with its prior."""

    def __init__(self, channels: int, cin: int, split: bool, cfg: FloWaveNetConfig) -> None:
        super().__init__()
        sq, sq_c = 2 * channels, 2 * cin
        self.flows = nn.ModuleList(Flow(sq, sq_c, cfg) for _ in range(cfg.n_flow))
        self.prior = WaveNet(sq // 2, sq, sq_c, cfg.channels, 2) if split else None

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, c = _squeeze(x), _squeeze(c)
        logdet = x.new_zeros(())
        log_p = x.new_zeros(())
        for flow in self.flows:
            x, c, det = flow(x, c)
            logdet = logdet + det
        if self.prior is not None:
            x, z = x.chunk(2, 1)
            mean, log_sd = self.prior(x, c).chunk(2, 1)
            log_p = _gaussian_log_p(z, mean, log_sd).sum()
        return x, c, logdet, log_p

    def reverse(self, x: Tensor, c: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.prior is not None:
            mean, log_sd = self.prior(x, c).chunk(2, 1)
            x = torch.cat([x, mean + torch.exp(log_sd) * eps], 1)
        for flow in reversed(self.flows):
            x, c = flow.reverse(x, c)
        return _unsqueeze(x), _unsqueeze(c)


class FloWaveNet(ZooModel):
    """The flow, its mel upsampler and the official density loss."""

    name = "flowavenet"
    sample_rate = 22_050

    def __init__(self, config: FloWaveNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FloWaveNetConfig()
        self.blocks = nn.ModuleList()
        channels, cin = 1, cfg.n_mels
        for i in range(cfg.n_block):
            split = (i + 1) % cfg.block_per_split == 0 and i != cfg.n_block - 1
            self.blocks.append(Block(channels, cin, split, cfg))
            cin *= 2
            if not split:
                channels *= 2
        self.upsample = nn.ModuleList()
        for s in (16, 16):
            self.upsample.append(WNConvTranspose2d(1, 1, (3, 2 * s), padding=(1, s // 2), stride=(1, s)))
        self._scheduler: torch.optim.lr_scheduler.StepLR | None = None

    def upsample_mel(self, mel: Tensor) -> Tensor:
        """(B, 80, F) -> (B, 80, 256 F)."""
        c = mel.unsqueeze(1)
        for convt in self.upsample:
            c = F.leaky_relu(convt(c), 0.4)
        return c.squeeze(1)

    def _check(self, audio_samples: int, mel: Tensor) -> None:
        cfg = self.config
        if mel.dim() != 3 or mel.shape[1] != cfg.n_mels:
            raise ValueError(f"FloWaveNet needs mels of shape (batch, {cfg.n_mels}, frames); got {tuple(mel.shape)}")
        cfg.check_samples(audio_samples)
        if audio_samples != cfg.hop * mel.shape[-1]:
            raise ValueError(f"FloWaveNet: {audio_samples} samples do not match {mel.shape[-1]} mel frames x {cfg.hop}")

    def log_likelihood(self, audio: Tensor, mel: Tensor) -> tuple[Tensor, Tensor]:
        """Density direction: (log p(z), log det) per sample, as ``Flowavenet.forward``."""
        b, _, t = audio.shape
        self._check(t, mel)
        c = self.upsample_mel(mel)
        x, logdet, log_p = audio, audio.new_zeros(()), audio.new_zeros(())
        for block in self.blocks:
            x, c, det, lp = block(x, c)
            logdet, log_p = logdet + det, log_p + lp
        log_p = log_p + 0.5 * (-math.log(2.0 * math.pi) - x.pow(2)).sum()
        return log_p / (b * t), logdet / (b * t)

    def reverse(self, z: Tensor, mel: Tensor) -> Tensor:
        """Sampling direction: z (B, 1, T) -> audio (B, 1, T), the official ``reverse``."""
        self._check(z.shape[-1], mel)
        cfg = self.config
        c = self.upsample_mel(mel)
        x, eps = z, []
        for i in range(cfg.n_block):
            x, c = _squeeze(x), _squeeze(c)
            if self.blocks[i].prior is not None:
                x, e = x.chunk(2, 1)
                eps.append(e)
        for block in reversed(self.blocks):
            x, c = block.reverse(x, c, eps.pop() if block.prior is not None else None)
        return x

    def make_inputs(self, batch: int = 1, device: Device = None, n_frames: int | None = None) -> tuple[Tensor, ...]:
        """A mel spectrogram (B, 80, F); by default F = 62 frames (15,872 samples)."""
        check_batch(batch, self.name)
        cfg = self.config
        frames = cfg.chunk_samples // cfg.hop if n_frames is None else n_frames
        cfg.check_samples(frames * cfg.hop)
        return (torch.rand(batch, cfg.n_mels, frames, device=self._device(device)),)

    def forward(self, mel: Tensor) -> Tensor:
        """Inference: z ~ N(0, 0.8^2) through ``reverse``: (B, 256 F) samples at 22,050 Hz."""
        cfg = self.config
        z = torch.randn(mel.shape[0], 1, mel.shape[-1] * cfg.hop, device=mel.device) * cfg.temperature
        return self.reverse(z, mel).squeeze(1)

    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None, n_samples: int | None = None
    ) -> tuple[Tensor, ...]:
        """Audio chunks (B, 1, 15,872) and their mels (B, 80, 62)."""
        self._stage(stage)
        cfg = self.config
        b = check_batch(cfg.batch_size if batch is None else batch, self.name)
        n = cfg.chunk_samples if n_samples is None else n_samples
        cfg.check_samples(n)
        dev = self._device(device)
        return (torch.rand(b, 1, n, device=dev) * 2.0 - 1.0, torch.rand(b, cfg.n_mels, n // cfg.hop, device=dev))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, audio: Tensor, mel: Tensor, stage: str | None = None) -> dict[str, Tensor]:
        """Density pass + backward, gradient-norm clipping, Adam and the StepLR scheduler."""
        self._stage(stage)
        cfg = self.config
        opt = self.optimizers()["model"]
        if self._scheduler is None:
            self._scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
        log_p, logdet = self.log_likelihood(audio, mel)
        loss = -(log_p + logdet)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.parameters(), cfg.clip_norm)
        opt.step()
        self._scheduler.step()
        return {"loss": loss.detach(), "log_p": log_p.detach(), "logdet": logdet.detach()}

    def parameter_counts(self) -> dict[str, int]:
        total = count_parameters(self.parameters())
        gains = sum(p.numel() for n, p in self.named_parameters() if n.endswith("weight_g"))
        return {"total": total, "without_weight_norm_gains": total - gains}
