"""DiffWave (Kong, Ping, Huang, Zhao & Catanzaro, ICLR 2021): a mel to a waveform by reverse diffusion.

A replica for cost measurement (random weights, output is noise) of the whole synthesis: every
reverse step of the sampler runs inside one :meth:`DiffWave.forward`.

Sources:

* ``lmnt-com/diffwave`` @ 0594106093b8d8c444de8bd8cd26482f653c569f: ``src/diffwave/model.py``
  (``DiffusionEmbedding``, ``SpectrogramUpsampler``, ``ResidualBlock``, ``DiffWave``), ``params.py``
  (30 layers, 64 channels, dilation cycle 10, 80 mels, 22.05 kHz, hop 256, 50 training betas
  ``linspace(1e-4, 0.05)``, fast inference betas ``[1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5]``) and
  ``inference.py`` (``predict``: the sampler below);
* the follow-up paper's code, ``ConstanceDws/neural-audio-energy`` @
  00428c01ffe6e131dc40dc9c6e7195c925cb12ab: ``src/models/diffwave/diffwave.py`` (LMNT's network, the
  unconditional branch dropped), ``model.py`` (16 kHz, 80 mels, stride 256, the same two schedules;
  ``generate`` always takes the fast 6-step schedule) and ``{small,medium,large}.yaml`` (30 layers,
  cycle 10, residual channels 32 / 64 / 128; ``default.yaml`` equals ``medium``).

Network (the epsilon predictor, :class:`DiffWaveDenoiser`), for C residual channels:

* step embedding: a fixed 128-d sinusoid table with one row per *training* step (50), read at a
  fractional step by linear interpolation, then Linear(128, 512), SiLU, Linear(512, 512), SiLU;
* mel upsampler: two ``ConvTranspose2d(1, 1, (3, 32), stride (1, 16), padding (1, 8))`` over the
  (mel band, frame) plane, LeakyReLU(0.4) after each: F frames -> 256 F samples exactly;
* input 1x1 conv 1 -> C, ReLU; 30 residual layers with dilation ``2 ** (i % 10)``: add
  Linear(512, C) of the step embedding, dilated conv (k 3) C -> 2C plus a 1x1 conditioner
  projection 80 -> 2C of the upsampled mel, sigmoid x tanh gate, 1x1 C -> 2C split into a residual
  (``(x + r) / sqrt 2``) and a skip; skips summed and scaled by ``1 / sqrt(30)``, 1x1 C -> C, ReLU,
  1x1 C -> 1.

Synthesis (:meth:`DiffWave.forward`, as ``predict(..., fast_sampling=True)``): the fast schedule's
steps are aligned to fractional training steps (the ``twiddle`` search of ``inference.py``); from
x ~ N(0, I) of 256 F samples, for n = S-1 .. 0: ``x = (x - beta_n / sqrt(1 - abar_n) * eps(x, t_n,
mel)) / sqrt(alpha_n)``, then (n > 0) ``x += sigma_n z`` and ``x = clamp(x, -1, 1)``. S = 6 network
calls per synthesis in every configuration here.

Parameters (the official modules instantiated in a scratch directory and counted with
``parameters()``; the step MLP holds 328,704 and the upsampler 194 of them), reproduced exactly
(``tests/test_vocoders_diffusion.py``): C = 32 / 64 / 128 -> **1,227,651 / 2,619,971 / 6,885,315**.
The DiffWave paper prints 2.64 M for BASE (C = 64) and 6.91 M for LARGE (C = 128): 0.8 % and
0.4 % above the official module's count (the paper's figures are not a rounding of it; the test
allows 2 %).

Checked once against the official code (scratch copy, not in the repository): with the official
module's weights loaded into :attr:`DiffWave.denoiser` (the state-dict keys are the same) and the
same seed, :meth:`DiffWave.forward` equals LMNT's ``predict(fast_sampling=True)`` and the
follow-up's ``generate()`` to 5e-7.

Decisions on the uncertain points:

* Number of steps: the reference ``diffwave`` uses the published fast schedule (6 steps), as the
  follow-up's ``generate`` always does. LMNT's ``inference.py`` runs the 50 training steps unless
  ``--fast`` is given; ``DiffWaveConfig(inference_betas=None)`` builds that 50-step sampler.
* The follow-up's ``generate`` has the ``if n > 0`` block (fresh noise) and the clamp indented
  *after* the loop instead of inside it: with ``n == 0`` after the loop no noise is ever added and
  the clamp runs once. The follow-up configurations keep that (``noise_every_step=False``); it
  saves 5 ``randn`` draws and 6 clamps, nothing next to 6 network calls.
* Sample rate: 22.05 kHz for the reference (``params.py``, LJ Speech), 16 kHz for the follow-up
  (its ``model.py``, which sets the data set's rate and stride). The hop is 256 in both, fixed by
  the upsampler's two stride-16 transposed convolutions.
* The step index is passed as a one-element tensor, as ``predict`` does, so the embedding MLP runs
  once per step for the whole batch (its output broadcasts over the batch).
* Initialisation (Kaiming normal, a zero output projection upstream) is PyTorch's default here:
  the weights are random either way and the cost does not depend on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Vocoder, VocoderSpec, check_mel

#: the upsampler's two transposed convolutions each stretch the frame axis by 16
UPSAMPLE_STRIDES = (16, 16)
EMBED_DIM = 128  # sinusoid table width (64 sines, 64 cosines)
EMBED_HIDDEN = 512  # step MLP width
FOLLOW_UP_SAMPLE_RATE = 16_000

_PAPER = "Kong, Ping, Huang, Zhao & Catanzaro, 'DiffWave: A Versatile Diffusion Model for Audio Synthesis', ICLR 2021"
_FOLLOW_UP_PAPER = (
    "Douwes, Bindi, Caillon, Esling & Briot, 'Is Quality Enough? Integrating Energy Consumption in a "
    "Large-Scale Evaluation of Neural Audio Synthesis Models', ICASSP 2023"
)
_CODE = (
    "github.com/lmnt-com/diffwave @ 0594106093b8d8c444de8bd8cd26482f653c569f, "
    "src/diffwave/model.py + params.py + inference.py"
)
_FOLLOW_UP_CODE = (
    "github.com/ConstanceDws/neural-audio-energy @ 00428c01ffe6e131dc40dc9c6e7195c925cb12ab, "
    "src/models/diffwave/diffwave.py + model.py + {size}.yaml"
)


def _linspace(start: float, end: float, steps: int) -> tuple[float, ...]:
    """``np.linspace`` in plain floats, so schedules exist before any tensor (meta device included)."""
    if steps == 1:
        return (start,)
    return tuple(start + (end - start) * i / (steps - 1) for i in range(steps))


def _cumprod(values: tuple[float, ...]) -> tuple[float, ...]:
    out, acc = [], 1.0
    for v in values:
        acc *= v
        out.append(acc)
    return tuple(out)


@dataclass(frozen=True)
class DiffWaveConfig:
    """``params.py`` keys of the network and the two schedules, plus the data's rate."""

    residual_layers: int = 30
    residual_channels: int = 64
    dilation_cycle_length: int = 10
    n_mels: int = 80
    sample_rate: int = 22_050
    #: training betas as ``np.linspace(start, end, steps)``; ``steps`` sizes the embedding table
    train_betas: tuple[float, float, int] = (1e-4, 0.05, 50)
    #: inference betas (the fast schedule); ``None``: sample with the training betas (50 steps)
    inference_betas: tuple[float, ...] | None = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)
    #: fresh noise and a clamp after every step (LMNT); ``False``: the follow-up's single final clamp
    noise_every_step: bool = True

    @property
    def hop_length(self) -> int:
        return math.prod(UPSAMPLE_STRIDES)

    @property
    def training_schedule(self) -> tuple[float, ...]:
        return _linspace(*self.train_betas)

    @property
    def sampling_schedule(self) -> tuple[float, ...]:
        return self.training_schedule if self.inference_betas is None else tuple(self.inference_betas)

    @property
    def steps(self) -> int:
        return len(self.sampling_schedule)


class DiffusionEmbedding(nn.Module):
    """Fractional diffusion step -> 512-d embedding (sinusoid table, interpolated, then a 2-layer MLP)."""

    def __init__(self, table_rows: int) -> None:
        super().__init__()
        half = EMBED_DIM // 2
        rows = torch.arange(table_rows, dtype=torch.float32).unsqueeze(1)
        freqs = 10.0 ** (torch.arange(half, dtype=torch.float32) * 4.0 / (half - 1))
        angles = rows * freqs.unsqueeze(0)
        # Not a parameter, and not saved: it is a fixed function of the table size (as upstream).
        self.register_buffer("table", torch.cat([angles.sin(), angles.cos()], dim=1), persistent=False)
        self.projection1 = nn.Linear(EMBED_DIM, EMBED_HIDDEN)
        self.projection2 = nn.Linear(EMBED_HIDDEN, EMBED_HIDDEN)

    def forward(self, step: Tensor) -> Tensor:
        if step.dtype in (torch.int32, torch.int64):
            x = self.table[step]
        else:
            # The fast schedule's steps fall between table rows: interpolate linearly.
            lo = torch.floor(step).long()
            hi = torch.ceil(step).long()
            x = self.table[lo] + (self.table[hi] - self.table[lo]) * (step - lo).unsqueeze(-1)
        x = F.silu(self.projection1(x))
        return F.silu(self.projection2(x))


class SpectrogramUpsampler(nn.Module):
    """(B, n_mels, F) -> (B, n_mels, 256 F): two single-channel 2-D transposed convs over (band, frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(1, 1, (3, 32), stride=(1, 16), padding=(1, 8))
        self.conv2 = nn.ConvTranspose2d(1, 1, (3, 32), stride=(1, 16), padding=(1, 8))

    def forward(self, mel: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1(mel.unsqueeze(1)), 0.4)
        x = F.leaky_relu(self.conv2(x), 0.4)
        return x.squeeze(1)


class ResidualBlock(nn.Module):
    """Step bias, dilated conv + mel projection, gated activation, 1x1 to (residual, skip)."""

    def __init__(self, n_mels: int, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(EMBED_HIDDEN, channels)
        self.conditioner_projection = nn.Conv1d(n_mels, 2 * channels, 1)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: Tensor, step_embedding: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        y = x + self.diffusion_projection(step_embedding).unsqueeze(-1)
        y = self.dilated_conv(y) + self.conditioner_projection(cond)
        gate, filt = y.chunk(2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=1)
        return (x + residual) * (1.0 / math.sqrt(2.0)), skip


class DiffWaveDenoiser(nn.Module):
    """One network evaluation: (noisy audio (B, L), step (1,) or (B,), mel (B, n_mels, L / 256)) -> eps (B, L)."""

    def __init__(self, cfg: DiffWaveConfig) -> None:
        super().__init__()
        c = cfg.residual_channels
        # Registration order follows the official module, so parameters line up with its state dict.
        self.input_projection = nn.Conv1d(1, c, 1)
        self.diffusion_embedding = DiffusionEmbedding(cfg.train_betas[2])
        self.spectrogram_upsampler = SpectrogramUpsampler()
        self.residual_layers = nn.ModuleList(
            ResidualBlock(cfg.n_mels, c, 2 ** (i % cfg.dilation_cycle_length)) for i in range(cfg.residual_layers)
        )
        self.skip_projection = nn.Conv1d(c, c, 1)
        self.output_projection = nn.Conv1d(c, 1, 1)

    def forward(self, audio: Tensor, step: Tensor, mel: Tensor) -> Tensor:
        x = F.relu(self.input_projection(audio.unsqueeze(1)))
        emb = self.diffusion_embedding(step)
        cond = self.spectrogram_upsampler(mel)
        skip_sum: Tensor | None = None
        for layer in self.residual_layers:
            x, skip = layer(x, emb, cond)
            skip_sum = skip if skip_sum is None else skip_sum + skip
        assert skip_sum is not None
        x = F.relu(self.skip_projection(skip_sum * (1.0 / math.sqrt(len(self.residual_layers)))))
        return self.output_projection(x).squeeze(1)


def aligned_steps(train: tuple[float, ...], infer: tuple[float, ...]) -> tuple[float, ...]:
    """The fractional training step each inference step stands for (``inference.py``'s twiddle search).

    Inference step s has cumulative ``abar_s``; it is placed between the training steps t, t + 1
    whose cumulative products bracket it, interpolated in sqrt(abar), so the network (trained on
    integer steps) is told the noise level it actually sees.
    """
    t_cum, s_cum = _cumprod(tuple(1 - b for b in train)), _cumprod(tuple(1 - b for b in infer))
    out = []
    for s, a in enumerate(s_cum):
        for t in range(len(train) - 1):
            if t_cum[t + 1] <= a <= t_cum[t]:
                out.append(t + (t_cum[t] ** 0.5 - a**0.5) / (t_cum[t] ** 0.5 - t_cum[t + 1] ** 0.5))
                break
        else:
            # Upstream silently drops such a step and then indexes past its list; refuse instead.
            raise ValueError(f"DiffWave: inference step {s} (abar {a:.4g}) lies outside the training schedule")
    return tuple(out)


class DiffWave(Vocoder):
    """mel (B, n_mels, F) -> waveform (B, 256 F): ``steps`` reverse-diffusion network calls."""

    def __init__(self, config: DiffWaveConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or DiffWaveConfig()
        self.sample_rate = cfg.sample_rate
        self.hop_length = cfg.hop_length
        self.n_mels = cfg.n_mels
        self.steps = cfg.steps
        self.denoiser = DiffWaveDenoiser(cfg)
        # Sampler coefficients in Python floats (float64, as upstream's numpy), ready before any tensor.
        betas = cfg.sampling_schedule
        alphas = tuple(1 - b for b in betas)
        abar = _cumprod(alphas)
        self.step_positions = aligned_steps(cfg.training_schedule, betas)
        self.c1 = tuple(1 / a**0.5 for a in alphas)
        self.c2 = tuple(b / (1 - ab) ** 0.5 for b, ab in zip(betas, abar))
        self.sigma = (0.0,) + tuple(((1 - abar[n - 1]) / (1 - abar[n]) * betas[n]) ** 0.5 for n in range(1, len(betas)))

    def forward(self, mel: Tensor) -> Tensor:
        check_mel(self, mel)
        audio = torch.randn(mel.shape[0], mel.shape[-1] * self.hop_length, device=mel.device, dtype=mel.dtype)
        for n in range(self.steps - 1, -1, -1):
            step = torch.full((1,), self.step_positions[n], device=mel.device, dtype=torch.float32)
            audio = self.c1[n] * (audio - self.c2[n] * self.denoiser(audio, step, mel))
            if self.config.noise_every_step:
                if n > 0:
                    audio = audio + self.sigma[n] * torch.randn_like(audio)
                audio = audio.clamp(-1.0, 1.0)
        return audio if self.config.noise_every_step else audio.clamp(-1.0, 1.0)


#: ``params.py`` as published (DiffWave BASE, fast 6-step sampler)
BASE = DiffWaveConfig()


def _follow_up(size: str, channels: int, official: int, paper: float | None, paper_name: str) -> VocoderSpec:
    cfg = replace(BASE, residual_channels=channels, sample_rate=FOLLOW_UP_SAMPLE_RATE, noise_every_step=False)
    figure = f"; its size is the DiffWave paper's {paper_name} ({paper} M printed)" if paper is not None else ""
    return VocoderSpec(
        name=f"diffwave-{size}",
        family="DiffWave",
        group="follow-up",
        build=lambda: DiffWave(cfg),
        official_params=official,
        paper_params=paper,
        paper=_FOLLOW_UP_PAPER + (f"; size figure: {_PAPER}" if paper is not None else ""),
        code=_FOLLOW_UP_CODE.format(size=size),
        notes=(
            f"{size}.yaml: 30 layers, {channels} residual channels, dilation cycle 10{figure}; 16 kHz, hop 256, "
            "80 mels; 6 steps (fast schedule, as generate() runs it), noise never re-injected and one final clamp "
            "(generate()'s mis-indented loop tail)"
        ),
    )


VARIANTS: tuple[VocoderSpec, ...] = (
    _follow_up("small", 32, 1_227_651, None, ""),
    _follow_up("medium", 64, 2_619_971, 2.64, "BASE"),
    _follow_up("large", 128, 6_885_315, 6.91, "LARGE"),
    VocoderSpec(
        name="diffwave",
        family="DiffWave",
        group="reference",
        build=lambda: DiffWave(BASE),
        official_params=2_619_971,
        paper_params=2.64,
        paper=_PAPER,
        code=_CODE,
        notes=(
            "DiffWave BASE as params.py publishes it: 30 layers, 64 channels, cycle 10, 22.05 kHz, hop 256, 80 mels; "
            "6 steps (the fast inference schedule, predict(fast_sampling=True)); 50 without --fast; the paper's "
            "2.64 M is 0.8 % above the official module's count"
        ),
    ),
)
