"""WaveGAN (Donahue, McAuley & Puckette, ICLR 2019), the 16,384-sample WGAN-GP model.

An architecture replica for compute and energy measurement: it has the official layer shapes,
loss and update schedule, but it is **not** a trained generator (its output is noise).

Source: ``chrisdonahue/wavegan`` (TensorFlow 1), ``wavegan.py`` (generator :43-145,
discriminator :171-251, phase shuffle :152) and ``train_wavegan.py`` (losses and optimisers
:95-190, loop :192-209, defaults :592-621). Configuration: the code defaults, which are the
paper's best WaveGAN: d = 64, kernel 25, stride 4, latent 100, no batch norm, transposed
convolutions (``genr_upsample zeros``), no post-processing filter, phase shuffle radius 2,
WGAN-GP with lambda 10, 5 critic updates per generator update, batch 64, Adam(1e-4, 0.5, 0.9).

Generator: z ~ U(-1, 1)^100 -> Dense(100 -> 16 x 1024) -> ReLU -> 5 transposed 1-D convs
(k 25, stride 4, 'same': 1024 -> 512 -> 256 -> 128 -> 64 -> 1 channels over 16 -> 16,384
samples), ReLU between and tanh at the end.
Discriminator: 5 x [Conv1d(k 25, stride 4, 'same') -> LeakyReLU(0.2)] (1 -> 64 -> ... -> 1024
channels over 16,384 -> 16 samples), phase shuffle after the first four, Dense(16,384 -> 1).

Parameter counts (derived from the official shapes in ``waveflow/zoo/REFERENCES.md``, reproduced exactly):
G = 1,654,784 + 13,107,712 + 3,277,056 + 819,328 + 204,864 + 1,601 = 19,065,345;
D = 1,664 + 204,928 + 819,456 + 3,277,312 + 13,108,224 + 16,385 = 17,427,969.

MACs per forward (transposed convs counted as input positions x k x C_in x C_out, as
``FlopCounterMode`` does): G = 1.638 M (dense) + 4 x 209.7 M + 6.6 M = 0.847 G per 16,384
samples; D = 6.6 M + 4 x 209.7 M + 16 k = 0.845 G.

One training step (one TF ``global_step``): 5 critic updates, each on a fresh real batch and
fresh z (G forward without grad, D on real, fake and interpolates, gradient penalty by double
backprop, D backward, Adam), then 1 generator update (G forward, D forward, backward into G).

Decisions on the uncertain points (``waveflow/zoo/REFERENCES.md``):

* "200k iterations, 4 days, batch 64" is taken as the reported schedule (registry), counting
  generator iterations, each with 5 critic updates (the code increments ``global_step`` only
  in the generator update); the paper text itself was not re-read.
* Phase shuffle follows the official code: one random shift in [-2, 2] per call, shared by
  the whole batch, with reflect padding (the PyTorch port draws one per example and, through
  a bug, never shuffles).
* TF 'same' padding of a stride-4, k-25 layer pads 10 before and 11 after; PyTorch's
  symmetric ``padding=11`` (and ``output_padding=1`` for the transposed layers) gives the same
  lengths and the same MACs, shifting the sampling grid by one sample, which is immaterial
  for cost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Device, ZooModel, check_batch, count_parameters, scale_width, wgan_gradient_penalty


@dataclass(frozen=True)
class WaveGANConfig:
    """Hyper-parameters of ``train_wavegan.py`` (defaults = the paper's best model)."""

    dim: int = 64  # wavegan_dim: channel unit d
    latent_dim: int = 100
    kernel_len: int = 25
    stride: int = 4
    slice_len: int = 16_384  # samples per example (1.024 s at 16 kHz)
    phaseshuffle_rad: int = 2
    batch_size: int = 64
    disc_nupdates: int = 5
    gp_lambda: float = 10.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)

    def scaled(self, width_scale: float) -> WaveGANConfig:
        return replace(self, dim=scale_width(self.dim, width_scale))

    @classmethod
    def tiny(cls) -> WaveGANConfig:
        """d = 4 and batch 2: the real layer structure at CPU-test size."""
        return replace(cls().scaled(1 / 16), batch_size=2)

    @property
    def start_len(self) -> int:
        """Length after the dense layer (16 for 16,384 samples)."""
        return self.slice_len // self.stride**5

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels from the dense output down to audio: 16d, 8d, 4d, 2d, d, 1."""
        d = self.dim
        return (16 * d, 8 * d, 4 * d, 2 * d, d, 1)


class PhaseShuffle(nn.Module):
    """Shift the whole batch by one random offset in [-rad, rad], reflect-padded (official code)."""

    def __init__(self, rad: int) -> None:
        super().__init__()
        self.rad = rad

    def forward(self, x: Tensor) -> Tensor:
        if self.rad == 0:
            return x
        # Drawn on the CPU so that the shift is a Python int on every device, meta included.
        shift = int(torch.randint(-self.rad, self.rad + 1, (), device="cpu"))
        if shift == 0:
            return x
        # Content moves right by `shift`: pad `shift` on the left (reflect), crop on the right.
        pad = (shift, 0) if shift > 0 else (0, -shift)
        y = F.pad(x, pad, mode="reflect")
        return y[..., : x.shape[-1]] if shift > 0 else y[..., -shift:]


class WaveGANGenerator(nn.Module):
    """z (B, 100) -> audio (B, 1, 16,384) in [-1, 1]."""

    def __init__(self, cfg: WaveGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.dense = nn.Linear(cfg.latent_dim, cfg.start_len * ch[0])
        pad = (cfg.kernel_len - cfg.stride + 1) // 2  # 11: 'same' output = stride x input
        self.upconvs = nn.ModuleList(
            nn.ConvTranspose1d(ch[i], ch[i + 1], cfg.kernel_len, cfg.stride, padding=pad, output_padding=1)
            for i in range(5)
        )

    def forward(self, z: Tensor) -> Tensor:
        x = F.relu(self.dense(z).view(z.shape[0], self.cfg.channels[0], self.cfg.start_len))
        for i, conv in enumerate(self.upconvs):
            x = conv(x)
            x = torch.tanh(x) if i == len(self.upconvs) - 1 else F.relu(x)
        return x


class WaveGANDiscriminator(nn.Module):
    """audio (B, 1, 16,384) -> WGAN critic score (B, 1)."""

    def __init__(self, cfg: WaveGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels[::-1]  # 1, d, 2d, 4d, 8d, 16d
        pad = (cfg.kernel_len - cfg.stride + 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(ch[i], ch[i + 1], cfg.kernel_len, cfg.stride, padding=pad) for i in range(5)
        )
        self.shuffle = PhaseShuffle(cfg.phaseshuffle_rad)
        self.dense = nn.Linear(cfg.start_len * ch[-1], 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[-1] != self.cfg.slice_len:
            raise ValueError(
                f"WaveGAN discriminator needs clips of shape (batch, 1, {self.cfg.slice_len}); got {tuple(x.shape)}"
            )
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if i < len(self.convs) - 1:
                x = self.shuffle(x)
        return self.dense(x.flatten(1))


class WaveGAN(ZooModel):
    """Generator + critic with the official WGAN-GP update schedule."""

    name = "wavegan"
    sample_rate = 16_000

    def __init__(self, config: WaveGANConfig | None = None) -> None:
        super().__init__()
        self.config = config or WaveGANConfig()
        self.generator = WaveGANGenerator(self.config)
        self.discriminator = WaveGANDiscriminator(self.config)

    def sample_latent(self, batch: int, device: Device = None) -> Tensor:
        """z ~ U(-1, 1)^latent_dim (``train_wavegan.py``)."""
        check_batch(batch, self.name)
        return torch.rand(batch, self.config.latent_dim, device=self._device(device)) * 2.0 - 1.0

    def make_inputs(self, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
        return (self.sample_latent(batch, device),)

    def forward(self, z: Tensor) -> Tensor:
        """Inference: one generator pass, (B, 16,384) samples = 1.024 s at 16 kHz."""
        return self.generator(z).squeeze(1)

    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None
    ) -> tuple[Tensor, ...]:
        """Real clips for one step: ``disc_nupdates`` fresh batches, shape (5, B, 1, 16,384)."""
        self._stage(stage)
        b = check_batch(self.config.batch_size if batch is None else batch, self.name)
        shape = (self.config.disc_nupdates, b, 1, self.config.slice_len)
        return (torch.rand(shape, device=self._device(device)) * 2.0 - 1.0,)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=cfg.betas),
        }

    def training_step(self, real: Tensor, stage: str | None = None) -> dict[str, Tensor]:
        """One generator iteration: ``disc_nupdates`` WGAN-GP critic updates, then one G update."""
        self._stage(stage)
        cfg = self.config
        if real.dim() != 4 or real.shape[0] != cfg.disc_nupdates:
            raise ValueError(
                f"WaveGAN step needs real clips of shape ({cfg.disc_nupdates}, B, 1, "
                f"{cfg.slice_len}); got {tuple(real.shape)}"
            )
        opt = self.optimizers()
        batch = real.shape[1]
        d_loss = torch.zeros((), device=real.device)
        for i in range(cfg.disc_nupdates):
            x = real[i]
            with torch.no_grad():
                fake = self.generator(self.sample_latent(batch, real.device))
            penalty = wgan_gradient_penalty(self.discriminator, x, fake)
            d_loss = self.discriminator(fake).mean() - self.discriminator(x).mean() + cfg.gp_lambda * penalty
            opt["discriminator"].zero_grad(set_to_none=True)
            d_loss.backward()
            opt["discriminator"].step()
        # The G update backpropagates through D to its input only, as TF computes gradients
        # for the generator's variables alone: D's weight gradients are switched off.
        self.discriminator.requires_grad_(False)
        try:
            fake = self.generator(self.sample_latent(batch, real.device))
            g_loss = -self.discriminator(fake).mean()
            opt["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.discriminator.requires_grad_(True)
        opt["generator"].step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def parameter_counts(self) -> dict[str, int]:
        return {
            "generator": count_parameters(self.generator.parameters()),
            "discriminator": count_parameters(self.discriminator.parameters()),
        }
