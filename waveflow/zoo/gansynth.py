"""GANSynth (Engel et al., ICLR 2019), IF-Mel + H, the final progressive stage (128 x 1024 x 2).

An architecture replica for compute and energy measurement: it has the official networks,
losses and step, but it is **not** a trained generator (its output is noise).

Source: ``magenta/magenta`` ``magenta/models/gansynth/``: ``configs/mel_prog_hires.py`` (the
README's best configuration: mel spectrograms, progressive training, high frequency
resolution), ``lib/networks.py`` (``generator`` :289-426, ``discriminator`` :429-530),
``lib/network_functions.py`` (pitch conditioning and classifier head), ``lib/layers.py``
(pixel norm, equalised-learning-rate conv, box up/down-scaling, minibatch stddev),
``lib/specgrams_helper.py`` and ``lib/spectral_ops.py`` (mel <-> linear, IF, iSTFT),
``lib/model.py`` (losses, Adam(8e-4, 0.0, 0.99), the prespecified data normaliser).

Generator (7 blocks; filters min(4096 / 2^b, 256) = 256, 256, 256, 256, 128, 64, 32): z (256,
N(0, 1)) ++ one-hot pitch (61) -> pixel norm -> zero-pad 1x1 to 3x31 -> conv (2, 16) VALID ->
conv 3x3; then per block nearest x2 upscale, two 3x3 convs; every conv is He-scaled at run
time (equalised learning rate) with bias, LeakyReLU(0.2) and pixel norm. Each block has a
to_rgb 1x1 conv (C_b -> 2) + tanh, upscaled to 128 x 1024 and blended with the progressive
weights; at the final stage only block 7 has weight 1 but every to_rgb still runs.
Discriminator: from_rgb (1x1 conv + LeakyReLU) of the box-downscaled input for every block,
blocks 7..2 of [3x3 conv, 3x3 conv, 2x2 average pool], minibatch stddev channel, 3x3 conv,
(2, 16) VALID conv, then a 1-unit WGAN critic head and a 61-way pitch classifier head.

Parameter counts (derived from the official configuration in ``waveflow/zoo/REFERENCES.md``, reproduced
exactly): G = 7,311,246 and
D = 6,831,230 including the 15,677-parameter classifier. MACs per forward at the final
resolution: G = 14.14 G network + 16.4 M for the seven to_rgb convs; D = 14.06 G.

Inference (``forward``): one G pass, the prespecified denormaliser, mel -> linear with the
official approximate inverse of the 1024 x 1024 mel matrix (``_mel_to_linear_matrix``),
magnitude = sqrt(exp(log-mel-power) @ M^-1), phase = (cumsum of IF x pi over time) @ M^-1,
polar -> complex, re-insert the DC bin, inverse STFT (n_fft 2048, hop 512, TF's
``inverse_stft_window_fn`` normalisation) and crop the 3,072 front-padding samples: 64,000
samples = 4 s at 16 kHz. The iSTFT is an ``irfft`` + overlap-add written here (``torch.istft``
has no meta-device kernel, and the costs are counted on meta).

One training step at the final stage (``tfgan.GANTrainSteps(1, 1)``), batch 8: a generator
update (G forward, D forward on the fakes, WGAN loss + 10 x AC loss, backward into G), then
a discriminator update (fresh z through G, D on real, fake and interpolates, WGAN loss +
10 x gradient penalty (target 1) + 0.001 x drift on real + 10 x AC loss on real, backward
into D), and the EMA (0.999) update of a generator copy used for evaluation.

Decisions on the uncertain points (``waveflow/zoo/REFERENCES.md``):

* The AC losses: the official graph calls the discriminator a second time on the same fake
  and real images to read the classifier logits. Here the critic and the classifier come
  from the same pass (one D forward per image set), i.e. TF's common-subexpression
  elimination is assumed to merge the duplicate passes. Without the merge a step would cost
  one more D forward on the fakes (G update) and on the reals (D update).
* The step is modelled at the final stage only. The 11 M-image schedule runs only ~4.65 M
  full-resolution-equivalent images (weighting the 13 stages by images), so ``reported_steps``
  (1,375,000) x this step over-counts training compute: the registry notes this.
* The IF -> phase round trip of ``melspecgrams_to_specgrams`` (phase -> IF -> cumsum) is
  the identity up to 2 pi wraps and is skipped.
* The EMA copy is created at the first training step and kept outside the module tree, so
  that it costs memory and its update costs time but it adds no trainable parameters (the
  counts above exclude it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Device, ZooModel, check_batch, count_parameters, scale_width, wgan_gradient_penalty


@dataclass(frozen=True)
class GANSynthConfig:
    """``mel_prog_hires`` hyper-parameters plus the ``model.py`` defaults it keeps."""

    latent_dim: int = 256
    num_pitches: int = 61  # MIDI 24-84
    num_resolutions: int = 7
    start_height: int = 2  # time frames at block 1
    start_width: int = 16  # frequency bins at block 1
    fmap_base: int = 4096
    fmap_max: int = 256
    kernel_size: int = 3
    batch_size: int = 8
    lr: float = 8e-4
    betas: tuple[float, float] = (0.0, 0.99)
    gp_weight: float = 10.0
    gp_target: float = 1.0
    real_score_penalty_weight: float = 0.001
    generator_ac_loss_weight: float = 10.0
    discriminator_ac_loss_weight: float = 10.0
    ema_decay: float = 0.999
    sample_rate: int = 16_000
    audio_length: int = 64_000
    overlap: float = 0.75  # hop = (1 - overlap) * n_fft
    # prespecified normaliser (model.py): normalised = a * x + b per channel (log-mag, IF)
    mag_normalizer_a: float = 0.0661371661726
    mag_normalizer_b: float = 0.113718730221
    p_normalizer_a: float = 0.8
    p_normalizer_b: float = 0.0
    width_scale: float = 1.0

    def scaled(self, width_scale: float) -> GANSynthConfig:
        return replace(self, width_scale=self.width_scale * width_scale)

    @classmethod
    def tiny(cls) -> GANSynthConfig:
        """Filters 8, 8, 8, 8, 4, 2, 1, batch 2, and a 128 x 128 final stage (0.5 s of audio).

        All seven blocks are kept; only the start width (16 -> 2 bins) shrinks, because at
        the full 128 x 1024 resolution even 1-8-channel convolutions take seconds on a CPU.
        """
        return replace(cls().scaled(1 / 32), batch_size=2, start_width=2, audio_length=8_000)

    def __post_init__(self) -> None:
        frames = self.spec_shape[0]
        if self.hop * (frames - 1) + self.n_fft < self.audio_length:
            raise ValueError(f"{frames} STFT frames of hop {self.hop} cannot cover {self.audio_length} samples")

    def num_filters(self, block: int) -> int:
        """``networks.num_filters``: min(fmap_base / 2^block, fmap_max), times the width scale."""
        return scale_width(int(min(self.fmap_base / 2.0**block, self.fmap_max)), self.width_scale)

    def scale_factor(self, block: int) -> int:
        """Upscale factor from block ``block`` (1-based) to the final resolution."""
        return 2 ** (self.num_resolutions - block)

    @property
    def spec_shape(self) -> tuple[int, int]:
        """(time frames, frequency bins) of the final stage: (128, 1024)."""
        f = self.scale_factor(1)
        return self.start_height * f, self.start_width * f

    @property
    def n_fft(self) -> int:
        return 2 * self.spec_shape[1]

    @property
    def hop(self) -> int:
        return int((1.0 - self.overlap) * self.n_fft)


class EqualizedConv2d(nn.Module):
    """``layers.custom_conv2d``: N(0, 1) weights scaled at run time by He's constant, plus bias.

    ``slope`` is the He initializer slope (0 for the LeakyReLU layers, 1 for to_rgb and the
    dense heads), so the run-time scale is sqrt(2 / ((1 + slope^2) * fan_in)).
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int | tuple[int, int], padding: str = "same", slope: float = 0.0
    ) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kh, kw))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = math.sqrt(2.0 / ((1.0 + slope**2) * c_in * kh * kw))
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """``layers.custom_dense`` with He slope 1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = math.sqrt(1.0 / c_in)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalise each pixel's channel vector to unit RMS (channels are dim 1 here, NCHW)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def _upscale(x: Tensor, factor: int) -> Tensor:
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def _downscale(x: Tensor, factor: int) -> Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


def generator_alpha(block: int, progress: float) -> float:
    """``networks._generator_alpha``: weight of block ``block``'s output at ``progress``."""
    return max(0.0, min(progress - (block - 2), block - progress))


def discriminator_alpha(block: int, progress: float) -> float:
    """``networks._discriminator_alpha``: weight of the from_rgb input of block ``block``."""
    return min(max(block - progress, 0.0), 1.0)


class GANSynthGenerator(nn.Module):
    """(z, one-hot pitch) -> normalised (B, 2, 128, 1024) log-mel-magnitude and mel-IF in [-1, 1]."""

    def __init__(self, cfg: GANSynthConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.num_resolutions
        c1 = cfg.num_filters(1)
        self.block1 = nn.ModuleList(
            [
                EqualizedConv2d(cfg.latent_dim + cfg.num_pitches, c1, (cfg.start_height, cfg.start_width), "valid"),
                EqualizedConv2d(c1, c1, cfg.kernel_size),
            ]
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    EqualizedConv2d(cfg.num_filters(b - 1), cfg.num_filters(b), cfg.kernel_size),
                    EqualizedConv2d(cfg.num_filters(b), cfg.num_filters(b), cfg.kernel_size),
                ]
            )
            for b in range(2, n + 1)
        )
        self.to_rgb = nn.ModuleList(EqualizedConv2d(cfg.num_filters(b), 2, 1, slope=1.0) for b in range(1, n + 1))

    def forward(self, z: Tensor, pitch_one_hot: Tensor, progress: float | None = None) -> Tensor:
        cfg = self.cfg
        progress = float(cfg.num_resolutions - 1) if progress is None else progress
        x = torch.cat([z, pitch_one_hot], dim=1)[:, :, None, None]
        x = pixel_norm(x)
        x = F.pad(x, (cfg.start_width - 1,) * 2 + (cfg.start_height - 1,) * 2)
        for conv in self.block1:
            x = pixel_norm(F.leaky_relu(conv(x), 0.2))
        lods = [x]
        for block in self.blocks:
            x = _upscale(x, 2)
            for conv in block:
                x = pixel_norm(F.leaky_relu(conv(x), 0.2))
            lods.append(x)
        out = 0.0
        for b, (lod, to_rgb) in enumerate(zip(lods, self.to_rgb, strict=True), start=1):
            rgb = _upscale(torch.tanh(to_rgb(lod)), cfg.scale_factor(b))
            out = out + generator_alpha(b, progress) * rgb
        return out


class GANSynthDiscriminator(nn.Module):
    """Normalised (B, 2, 128, 1024) -> (critic score (B, 1), pitch logits (B, 61))."""

    def __init__(self, cfg: GANSynthConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = cfg.num_resolutions
        self.from_rgb = nn.ModuleList(EqualizedConv2d(2, cfg.num_filters(b), 1) for b in range(n, 0, -1))
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    EqualizedConv2d(cfg.num_filters(b), cfg.num_filters(b), cfg.kernel_size),
                    EqualizedConv2d(cfg.num_filters(b), cfg.num_filters(b - 1), cfg.kernel_size),
                ]
            )
            for b in range(n, 1, -1)
        )
        c1, c0 = cfg.num_filters(1), cfg.num_filters(0)
        self.block1 = nn.ModuleList(
            [
                EqualizedConv2d(c1 + 1, c1, cfg.kernel_size),
                EqualizedConv2d(c1, c0, (cfg.start_height, cfg.start_width), "valid"),
            ]
        )
        self.logits = EqualizedLinear(c0, 1)
        self.classifier = EqualizedLinear(c0, cfg.num_pitches)

    def forward(self, x: Tensor, progress: float | None = None) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        if x.dim() != 4 or tuple(x.shape[1:]) != (2, *cfg.spec_shape):
            raise ValueError(
                f"GANSynth discriminator needs (batch, 2, {cfg.spec_shape[0]}, {cfg.spec_shape[1]}) "
                f"spectrograms; got {tuple(x.shape)}"
            )
        n = cfg.num_resolutions
        progress = float(n - 1) if progress is None else progress
        lods = []
        for i, from_rgb in enumerate(self.from_rgb):
            b = n - i
            lod = F.leaky_relu(from_rgb(_downscale(x, cfg.scale_factor(b))), 0.2)
            lods.append((lod, discriminator_alpha(b, progress)))
        h = lods[0][0]
        for block, (lod, alpha) in zip(self.blocks, lods[1:], strict=True):
            for conv in block:
                h = F.leaky_relu(conv(h), 0.2)
            h = _downscale(h, 2)
            h = alpha * lod + (1.0 - alpha) * h
        stddev = torch.sqrt(h.var(dim=0, unbiased=False) + 1e-6).mean()
        h = torch.cat([h, stddev.expand(h.shape[0], 1, *h.shape[2:])], dim=1)
        for conv in self.block1:
            h = F.leaky_relu(conv(h), 0.2)
        h = h.flatten(1)
        return self.logits(h), self.classifier(h)


def _hertz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


def _mel_to_hertz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (np.exp(np.asarray(m) / 1127.0) - 1.0)


@lru_cache(maxsize=4)
def linear_to_mel_matrix(num_bins: int, sample_rate: int) -> np.ndarray:
    """``spectral_ops.linear_to_mel_weight_matrix(num_bins, num_bins, sr, 0, sr / 2)``, [freq, mel].

    HTK mel scale, triangular bands, the DC row zeroed, and every band widened to at least
    1.5 frequency bins, as in GANSynth's modified copy of the TF function.
    """
    nyquist = sample_rate / 2.0
    freqs = np.linspace(0.0, nyquist, num_bins)[1:, None]
    edges = np.linspace(_hertz_to_mel(0.0), _hertz_to_mel(nyquist), num_bins + 2)
    lower, center, upper = edges[:-2].copy(), edges[1:-1].copy(), edges[2:].copy()
    freq_th = 1.5 * nyquist / num_bins
    for i in range(num_bins):
        if _mel_to_hertz(upper[i]) - _mel_to_hertz(lower[i]) < freq_th:
            rhs = 0.5 * freq_th / (_mel_to_hertz(center[i]) + 700.0)
            dm = 1127.0 * np.log(rhs + np.sqrt(1.0 + rhs**2))
            lower[i], upper[i] = center[i] - dm, center[i] + dm
    lo, ce, up = (_mel_to_hertz(v)[None, :] for v in (lower, center, upper))
    weights = np.maximum(0.0, np.minimum((freqs - lo) / (ce - lo), (up - freqs) / (up - ce)))
    return np.pad(weights, [[1, 0], [0, 0]])


@lru_cache(maxsize=4)
def mel_to_linear_matrix(num_bins: int, sample_rate: int) -> np.ndarray:
    """``SpecgramsHelper._mel_to_linear_matrix``: M^T diag(1 / colsum(M M^T)), [mel, freq]."""
    m = linear_to_mel_matrix(num_bins, sample_rate)
    p = m @ m.T
    s = p.sum(axis=0)
    d = np.where(np.abs(s) > 1e-8, 1.0 / np.where(s == 0, 1.0, s), s)
    return (m.T * d[None, :]).astype(np.float32)


class GANSynth(ZooModel):
    """Generator + discriminator (with pitch classifier) + the waveform synthesis."""

    name = "gansynth"
    sample_rate = 16_000

    def __init__(self, config: GANSynthConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or GANSynthConfig()
        self.generator = GANSynthGenerator(cfg)
        self.discriminator = GANSynthDiscriminator(cfg)
        bins = cfg.spec_shape[1]
        mel2l = mel_to_linear_matrix(bins, cfg.sample_rate)
        self.register_buffer("mel_to_linear", torch.tensor(mel2l), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self._ema: nn.Module | None = None

    # ---------------------------------------------------------------- inference
    def sample_latent(self, batch: int, device: Device = None) -> tuple[Tensor, Tensor]:
        """z ~ N(0, 1)^256 and a one-hot pitch drawn uniformly from the 61 classes."""
        check_batch(batch, self.name)
        dev = self._device(device)
        z = torch.randn(batch, self.config.latent_dim, device=dev)
        pitch = torch.randint(0, self.config.num_pitches, (batch,), device=dev)
        return z, F.one_hot(pitch, self.config.num_pitches).to(z.dtype)

    def make_inputs(self, batch: int = 1, device: Device = None) -> tuple[Tensor, ...]:
        return self.sample_latent(batch, device)

    def denormalize(self, x: Tensor) -> Tensor:
        """``SpecgramsPrespecifiedNormalizer.denormalize_op``: (x - b) / a per channel."""
        c = self.config
        a = torch.tensor([c.mag_normalizer_a, c.p_normalizer_a], device=x.device, dtype=x.dtype)
        b = torch.tensor([c.mag_normalizer_b, c.p_normalizer_b], device=x.device, dtype=x.dtype)
        return (x - b[:, None, None]) / a[:, None, None]

    def normalize(self, x: Tensor) -> Tensor:
        """``normalize_op``: clip(a * x + b, -1, 1), applied to data before the discriminator."""
        c = self.config
        a = torch.tensor([c.mag_normalizer_a, c.p_normalizer_a], device=x.device, dtype=x.dtype)
        b = torch.tensor([c.mag_normalizer_b, c.p_normalizer_b], device=x.device, dtype=x.dtype)
        return (a[:, None, None] * x + b[:, None, None]).clamp(-1.0, 1.0)

    def melspecgrams_to_waves(self, melspec: Tensor) -> Tensor:
        """(B, 2, 128, 1024) log-mel-power and mel-IF -> (B, 64,000) audio.

        mel -> linear with the approximate inverse matrix, IF integrated over time into phase,
        polar -> complex, DC bin re-inserted as zero, inverse STFT, front padding cropped.
        """
        cfg = self.config
        if melspec.dim() != 4 or tuple(melspec.shape[1:]) != (2, *cfg.spec_shape):
            raise ValueError(
                f"need (batch, 2, {cfg.spec_shape[0]}, {cfg.spec_shape[1]}) spectrograms; got {tuple(melspec.shape)}"
            )
        logmelmag2, mel_p = melspec[:, 0], melspec[:, 1]  # (B, time, mel)
        mag2 = torch.exp(logmelmag2) @ self.mel_to_linear
        mag = torch.exp(0.5 * torch.log(mag2.clamp_min(0.0) + 1e-6))
        phase = torch.cumsum(mel_p * math.pi, dim=1) @ self.mel_to_linear
        stft = torch.polar(mag, phase)
        stft = F.pad(stft, (1, 0))  # DC bin back in: (B, time, n_fft / 2 + 1)
        return self.inverse_stft(stft)[:, -cfg.audio_length :]

    def inverse_stft(self, stft: Tensor) -> Tensor:
        """``tf.contrib.signal.inverse_stft`` with ``inverse_stft_window_fn``: irfft, window, overlap-add.

        The synthesis window is the Hann window divided by the sum of squared Hann windows
        that overlap each sample (constant for hop = n_fft / 4), so a Hann-analysed STFT
        inverts exactly.
        """
        cfg = self.config
        frames = torch.fft.irfft(stft, n=cfg.n_fft, dim=-1)  # (B, T, n_fft)
        denom = self.window.pow(2).view(-1, cfg.hop).sum(dim=0).repeat(cfg.n_fft // cfg.hop)
        frames = frames * (self.window / denom)
        length = cfg.hop * (frames.shape[1] - 1) + cfg.n_fft
        out = F.fold(frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, cfg.n_fft), stride=(1, cfg.hop))
        return out.view(frames.shape[0], length)

    def forward(self, z: Tensor, pitch_one_hot: Tensor) -> Tensor:
        """Inference: G pass -> denormalise -> mel inversion -> iSTFT: (B, 64,000) = 4 s at 16 kHz."""
        return self.melspecgrams_to_waves(self.denormalize(self.generator(z, pitch_one_hot)))

    # ---------------------------------------------------------------- training
    def make_batch(
        self, batch: int | None = None, device: Device = None, stage: str | None = None
    ) -> tuple[Tensor, ...]:
        """Real (un-normalised) mel specgrams (B, 2, 128, 1024) and their one-hot pitches."""
        self._stage(stage)
        b = check_batch(self.config.batch_size if batch is None else batch, self.name)
        dev = self._device(device)
        real = torch.randn(b, 2, *self.config.spec_shape, device=dev)
        pitch = torch.randint(0, self.config.num_pitches, (b,), device=dev)
        return real, F.one_hot(pitch, self.config.num_pitches).float()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=cfg.betas),
        }

    @property
    def generator_ema(self) -> nn.Module:
        """The evaluation copy of G (decay 0.999), created on first use; not a submodule."""
        if self._ema is None:
            # object.__setattr__: a plain attribute, not a registered submodule.
            object.__setattr__(self, "_ema", copy.deepcopy(self.generator).requires_grad_(False))
        return self._ema

    def training_step(self, real: Tensor, real_pitch: Tensor, stage: str | None = None) -> dict[str, Tensor]:
        """One TF-GAN step at the final resolution: G update, then D update, then the EMA update."""
        self._stage(stage)
        cfg = self.config
        opt = self.optimizers()
        batch = real.shape[0]
        real_n = self.normalize(real)

        # Generator update: D's weight gradients are not computed (TF differentiates G's vars only).
        self.discriminator.requires_grad_(False)
        try:
            z, pitch = self.sample_latent(batch, real.device)
            score, logits = self.discriminator(self.generator(z, pitch))
            g_loss = -score.mean() + cfg.generator_ac_loss_weight * F.cross_entropy(logits, pitch.argmax(1))
            opt["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.discriminator.requires_grad_(True)
        opt["generator"].step()

        # Discriminator update on fresh fakes.
        z, pitch = self.sample_latent(batch, real.device)
        with torch.no_grad():
            fake = self.generator(z, pitch)
        fake_score, _ = self.discriminator(fake)
        real_score, real_logits = self.discriminator(real_n)
        penalty = wgan_gradient_penalty(self.discriminator, real_n, fake, cfg.gp_target)
        d_loss = (
            fake_score.mean()
            - real_score.mean()
            + cfg.gp_weight * penalty
            + cfg.real_score_penalty_weight * real_score.pow(2).mean()
            + cfg.discriminator_ac_loss_weight * F.cross_entropy(real_logits, real_pitch.argmax(1))
        )
        opt["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        opt["discriminator"].step()

        with torch.no_grad():
            ema = self.generator_ema
            for p_ema, p in zip(ema.parameters(), self.generator.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - cfg.ema_decay)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def parameter_counts(self) -> dict[str, int]:
        return {
            "generator": count_parameters(self.generator.parameters()),
            "discriminator": count_parameters(self.discriminator.parameters()),
        }
