"""WaveFlow: a flow-based vocoder that folds audio into a 2-D matrix (Ping et al., ICML 2020).

Shapes used throughout (B = batch, T = samples, h = squeezed height, W = T / h columns,
L = mel frames = T // hop + 1, see :mod:`waveflow.audio` for the alignment):

* audio and z: ``(B, T)`` (or ``(T,)`` unbatched);
* mel: ``(B, n_mels, L)`` (or ``(n_mels, L)``);
* squeezed audio: ``(B, 1, h, W)`` with ``x2d[b, 0, i, j] = x[b, j * h + i]``: each column holds h
  consecutive samples, so the height axis is "short time" and the width axis "long time".

Density direction (``forward``, one parallel pass, used for training): for every flow, row 0 is
copied and row ``i >= 1`` becomes ``z_i = x_i * exp(log_s_i) + t_i`` with ``(log_s_i, t_i)``
computed from rows ``< i`` and the conditioning of row ``i``. The Jacobian is triangular, so
``log|det J| = sum(log_s)``. Rows (and the conditioning) are permuted after each flow.

Synthesis (``infer``) inverts row by row, ``x_i = (z_i - t_i) * exp(-log_s_i)``: h - 1 sequential
steps per flow. This file holds the straightforward reference inverse; :mod:`waveflow.synthesis`
holds the cached fast path that is tested against it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import WaveFlowConfig
from .modules import CouplingNet, MelUpsampler


def permutation(n_height: int, flow: int, n_flows: int, strategy: str) -> torch.Tensor:
    """Row order applied after ``flow``: ``x_next[:, :, k] = x[:, :, perm[k]]``.

    ``"reverse"`` flips all rows after every flow. ``"bipartite"`` flips all rows after the first
    half of the flows and each half separately after the second half (for h=16: 7..0, 15..8).
    """
    rows = torch.arange(n_height)
    if strategy == "reverse" or flow < n_flows // 2:
        return rows.flip(0)
    half = n_height // 2
    return torch.cat([rows[:half].flip(0), rows[half:].flip(0)])


def squeeze(x: torch.Tensor, n_height: int) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, C, h, T/h)``, column-major: ``out[b, c, i, j] = x[b, c, j*h + i]``."""
    b, c, t = x.shape
    return x.reshape(b, c, t // n_height, n_height).transpose(2, 3)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: ``(B, C, h, W)`` -> ``(B, C, h*W)``."""
    b, c, h, w = x.shape
    return x.transpose(2, 3).reshape(b, c, h * w)


# ------------------------------------------------------------------------------------------------
# input checks, shared by the reference model and the fast synthesizer
def check_audio(config: WaveFlowConfig, audio: torch.Tensor, name: str = "audio") -> torch.Tensor:
    """Batched ``(B, T)`` view of audio or a latent; ValueError unless T is a positive multiple of h
    and every sample is finite."""
    if audio.dim() not in (1, 2):
        raise ValueError(f"WaveFlow: {name} must have shape (batch, time) or (time,), got {tuple(audio.shape)}")
    x = audio if audio.dim() == 2 else audio.unsqueeze(0)
    t, h = x.shape[-1], config.n_height
    if t == 0 or t % h:
        raise ValueError(
            f"WaveFlow: {name} length {t} is not a positive multiple of the squeezed height h={h}; "
            f"expected T % {h} == 0 (crop or pad the audio)"
        )
    if x.device.type != "meta" and not torch.isfinite(x).all():  # meta: shape-only FLOP counting
        raise ValueError(f"WaveFlow: {name} contains NaN or infinite values; expected finite samples")
    return x


def check_mel(config: WaveFlowConfig, mel: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Batched ``(B, n_mels, L)`` view of a log-mel; ValueError on a wrong shape, batch or value."""
    if mel.dim() not in (2, 3):
        raise ValueError(
            f"WaveFlow: mel must have shape (batch, n_mels, frames) or (n_mels, frames), got {tuple(mel.shape)}"
        )
    m = mel if mel.dim() == 3 else mel.unsqueeze(0)
    if m.shape[1] != config.n_mels:
        raise ValueError(
            f"WaveFlow: mel has {m.shape[1]} mel bins; expected n_mels={config.n_mels} "
            "(mel shape is (batch, n_mels, frames))"
        )
    if batch is not None and m.shape[0] != batch:
        raise ValueError(f"WaveFlow: mel batch {m.shape[0]} does not match audio batch {batch}")
    if m.device.type != "meta" and not torch.isfinite(m).all():
        raise ValueError(
            "WaveFlow: mel contains NaN or infinite values; expected a finite log-mel (floored at log 1e-5)"
        )
    return m


def check_frames(config: WaveFlowConfig, frames: int, samples: int) -> None:
    """ValueError unless ``frames == samples // hop + 1``, the alignment :func:`waveflow.audio.log_mel` gives."""
    expected = samples // config.hop_length + 1
    if frames != expected:
        raise ValueError(
            f"WaveFlow: mel has {frames} frames but the audio has {samples} samples; expected "
            f"{expected} frames (samples // hop {config.hop_length} + 1, as log_mel gives)"
        )


def prepare_latent(
    config: WaveFlowConfig, mel: torch.Tensor, sigma: float, z: torch.Tensor | None, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the inputs of synthesis and return ``(batched mel, batched z)``.

    Shared by :meth:`WaveFlow.infer` and :class:`~waveflow.model.FastSynthesizer`, which must sample
    the same latent from the same generator to give the same audio. Without ``z``, the latent is
    ``sigma`` times standard normal noise of ``hop * (frames - 1)`` samples.
    """
    m = check_mel(config, mel)
    if z is None:
        samples = config.hop_length * (m.shape[-1] - 1)
        if samples <= 0 or samples % config.n_height:
            raise ValueError(
                f"WaveFlow.infer: mel has {m.shape[-1]} frames, giving {samples} samples; expected at least "
                f"2 frames and hop * (frames - 1) divisible by h={config.n_height}"
            )
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"WaveFlow.infer: sigma must be finite and >= 0, got {sigma}")
        zz = torch.randn(m.shape[0], samples, generator=generator, device=m.device, dtype=m.dtype) * sigma
    else:
        zz = check_audio(config, z, name="z").to(m.dtype)
        if zz.shape[0] != m.shape[0]:
            raise ValueError(f"WaveFlow.infer: z batch {zz.shape[0]} does not match mel batch {m.shape[0]}")
        check_frames(config, m.shape[-1], zz.shape[-1])
    return m, zz


def conditioning_order(config: WaveFlowConfig) -> torch.Tensor:
    """``(n_flows, h)`` row indices: row ``j`` of flow ``i`` is conditioned on row ``order[i, j]`` of
    the original conditioning (the composition of the permutations of the flows before it)."""
    order = [torch.arange(config.n_height)]
    for i in range(config.n_flows - 1):
        order.append(order[-1][permutation(config.n_height, i, config.n_flows, config.permutation)])
    return torch.stack(order)


class WaveFlow(nn.Module):
    """WaveFlow vocoder: mel-conditioned normalising flow over squeezed audio.

    Args:
        config: a :class:`~waveflow.config.WaveFlowConfig` (default: WF2, h=16, r=64).
        weight_norm: weight-normalise the convolutions, as trained (default). ``False`` builds plain
            weights: the form :func:`~waveflow.model.fold_weight_norm` returns, and what to build
            on the meta device to count FLOPs or parameters, where the ~400 norms of a weight-normed
            build cost seconds of Python and change neither count.
    """

    def __init__(self, config: WaveFlowConfig | None = None, *, weight_norm: bool = True) -> None:
        super().__init__()
        self.config = config = config or WaveFlowConfig()
        self.weight_norm = weight_norm
        self.upsampler = MelUpsampler(config.upsample_scales, config.leaky_slope, weight_norm=weight_norm)
        self.flows = nn.ModuleList(
            CouplingNet(
                config.res_channels,
                config.n_mels,
                config.kernel_size,
                config.dilations_h,
                config.dilations_w,
                weight_norm=weight_norm,
            )
            for _ in range(config.n_flows)
        )
        perms = [permutation(config.n_height, i, config.n_flows, config.permutation) for i in range(config.n_flows)]
        self.register_buffer("perms", torch.stack(perms), persistent=False)
        self.register_buffer("inverse_perms", torch.stack([torch.argsort(p) for p in perms]), persistent=False)
        self.register_buffer("cond_order", conditioning_order(config), persistent=False)

    # ----------------------------------------------------------------------------------------
    # conditioning
    def condition(self, mel: torch.Tensor, samples: int) -> torch.Tensor:
        """Upsample ``(B, n_mels, L)`` to per-sample conditioning ``(B, n_mels, samples)``.

        The upsampler gives ``hop * L`` steps with frame j centred on step ``hop*j + hop/2 - 1/2``;
        starting the window half a hop in aligns frame j with sample ``hop * j``, where the centred
        STFT put it. When ``samples % hop > hop / 2`` the window runs past the end by up to half a
        hop; those steps repeat the last value.
        """
        up = self.upsampler(mel)
        start = self.config.hop_length // 2
        cond = up[..., start : start + samples]
        if cond.shape[-1] < samples:
            cond = torch.cat([cond, cond[..., -1:].expand(*cond.shape[:-1], samples - cond.shape[-1])], dim=-1)
        return cond

    # ----------------------------------------------------------------------------------------
    # density direction
    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map audio to the latent: ``(B, T), (B, n_mels, T//hop + 1) -> z (B, T), log_det (B,)``.

        ``z`` is returned in the audio's own 1-D layout, so it can be passed to :meth:`infer`.
        Unbatched inputs give ``z`` of shape ``(T,)`` and a scalar ``log_det``.
        """
        x = check_audio(self.config, audio)
        m = check_mel(self.config, mel, x.shape[0])
        check_frames(self.config, m.shape[-1], x.shape[-1])
        h = self.config.n_height
        c = squeeze(self.condition(m, x.shape[-1]), h)
        x = squeeze(x.unsqueeze(1), h)
        log_det = x.new_zeros(x.shape[0])
        for i, flow in enumerate(self.flows):
            log_s, t = flow(x[:, :, :-1], c[:, :, 1:])
            x = torch.cat([x[:, :, :1], x[:, :, 1:] * torch.exp(log_s) + t], dim=2)
            log_det = log_det + log_s.sum(dim=(1, 2, 3))
            x, c = x[:, :, self.perms[i]], c[:, :, self.perms[i]]
        z = unsqueeze(x).squeeze(1)
        if audio.dim() == 1:
            return z[0], log_det[0]
        return z, log_det

    def log_likelihood(self, audio: torch.Tensor, mel: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """Mean log-likelihood in nats per sample under a Gaussian prior N(0, sigma^2).

        ``log p(x) = sum log N(z; 0, sigma^2) + log|det J|`` averaged over batch and samples, so
        ``-model.log_likelihood(audio, mel)`` is the training loss (negative values of the loss are
        normal: this is a continuous density).
        """
        sigma = self.config.sigma if sigma is None else sigma
        z, log_det = self(audio, mel)
        n = z.numel()
        return -0.5 * (z / sigma).pow(2).sum() / n + log_det.sum() / n - 0.5 * math.log(2 * math.pi) - math.log(sigma)

    # ----------------------------------------------------------------------------------------
    # synthesis (reference path)
    @torch.no_grad()
    def infer(
        self,
        mel: torch.Tensor,
        sigma: float = 1.0,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Synthesise audio from a mel (reference implementation, recomputes each row's prefix).

        Args:
            mel: ``(B, n_mels, L)`` or ``(n_mels, L)`` log-mel.
            sigma: temperature, the std of the sampled latent (1.0, the prior used in training).
            z: latent ``(B, T)`` to invert instead of sampling; needs ``L == T // hop + 1``.
            generator: random generator for reproducible sampling.

        Returns:
            audio ``(B, T)`` (``(T,)`` for an unbatched mel) with ``T = hop * (L - 1)`` unless ``z``
            fixes it.
        """
        m, zz = prepare_latent(self.config, mel, sigma, z, generator)
        h = self.config.n_height
        c_all = squeeze(self.condition(m, zz.shape[-1]), h)
        x = squeeze(zz.unsqueeze(1), h).clone()
        for i in reversed(range(len(self.flows))):
            x = x[:, :, self.inverse_perms[i]]
            c = c_all[:, :, self.cond_order[i]]
            flow = self.flows[i]
            for row in range(1, h):
                # Causality: the parameters of `row` depend only on rows < row, all final already.
                log_s, t = flow(x[:, :, :row], c[:, :, 1 : row + 1])
                x[:, :, row] = (x[:, :, row] - t[:, :, -1]) * torch.exp(-log_s[:, :, -1])
        audio = unsqueeze(x).squeeze(1)
        return audio[0] if mel.dim() == 2 else audio

    # ----------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Every parameter, weight-norm gains included (the paper's count).

        A plain-weight model (``weight_norm=False``) adds the gains its weight-normed twin has, one
        per entry of dim 0 of every convolution but the flows' output convolutions, so both forms
        give the paper's figure.
        """
        total = sum(p.numel() for p in self.parameters())
        if not self.weight_norm:
            outs = {id(flow.out) for flow in self.flows}
            convs = (m for m in self.modules() if isinstance(m, nn.modules.conv._ConvNd) and id(m) not in outs)
            total += sum(m.weight.shape[0] for m in convs)
        return total


def parameter_count(config: WaveFlowConfig) -> int:
    """The paper's parameter count of ``config`` (weight-norm gains included), from a plain-weight
    build on the meta device: no memory (WF5 has 86 M parameters) and none of the ~400 norms a
    weight-normed build computes (seconds of Python on meta)."""
    with torch.device("meta"):
        return WaveFlow(config, weight_norm=False).num_parameters()
