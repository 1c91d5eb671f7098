"""The work that ``make bench`` times and ``make bench-breakdown`` profiles: one definition of each.

A benchmark and the profile that explains it must run the same thing, so both take their synthesis
(synthesizer and mel) and their training step from here rather than each building its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..audio import HOP_LENGTH, N_MELS, SAMPLE_RATE, log_mel, samples_for
from ..model import FastSynthesizer, WaveFlow, WaveFlowConfig

#: A typical log-mel level (natural log of magnitudes; silence sits at log(1e-5) = -11.5), so that the
#: random benchmark mels exercise the conditioning like speech does.
TYPICAL_LOG_MEL = -5.0


def benchmark_mel(seconds: float, batch: int) -> torch.Tensor:
    """``(batch, n_mels, frames)`` random log-mel around :data:`TYPICAL_LOG_MEL` for ``seconds`` of audio (seeded)."""
    frames = samples_for(seconds) // HOP_LENGTH + 1
    return torch.randn(batch, N_MELS, frames, generator=torch.Generator().manual_seed(0)) + TYPICAL_LOG_MEL


@dataclass
class SynthesisWorkload:
    """A fast synthesizer of an untrained WaveFlow (the weights do not change the cost) and its mel."""

    synth: FastSynthesizer
    mel: torch.Tensor

    @property
    def audio_s(self) -> float:
        """Seconds of audio one :meth:`run` generates, over the whole batch."""
        return self.mel.shape[0] * HOP_LENGTH * (self.mel.shape[-1] - 1) / SAMPLE_RATE

    def run(self, mel: torch.Tensor | None = None) -> torch.Tensor:
        """One synthesis of the workload's mel (or of ``mel``), from a seeded latent."""
        return self.synth(self.mel if mel is None else mel, generator=torch.Generator().manual_seed(0))


def synthesis_workload(config: WaveFlowConfig, seconds: float, batch: int) -> SynthesisWorkload:
    """:class:`SynthesisWorkload` of ``config`` on :func:`benchmark_mel` of ``seconds`` x ``batch``."""
    return SynthesisWorkload(FastSynthesizer(WaveFlow(config).eval()), benchmark_mel(seconds, batch))


@dataclass
class TrainingWorkload:
    """A WaveFlow in training mode with its Adam optimiser and one batch of audio and its log-mel."""

    model: WaveFlow
    optimizer: torch.optim.Optimizer
    audio: torch.Tensor
    mel: torch.Tensor

    @property
    def audio_s(self) -> float:
        """Seconds of audio in one :meth:`step`'s batch."""
        return self.audio.numel() / SAMPLE_RATE

    def step(self, audio: torch.Tensor | None = None, mel: torch.Tensor | None = None) -> None:
        """One training step (forward, backward, Adam) on the workload's batch, or on ``audio``/``mel``."""
        audio = self.audio if audio is None else audio
        mel = self.mel if mel is None else mel
        self.optimizer.zero_grad(set_to_none=True)
        (-self.model.log_likelihood(audio, mel)).backward()
        self.optimizer.step()


def training_workload(config: WaveFlowConfig, batch: int, segment: int, seed: int = 3) -> TrainingWorkload:
    """:class:`TrainingWorkload` of ``config`` on ``batch x segment`` samples of seeded noise at speech level."""
    model = WaveFlow(config).train()
    audio = 0.1 * torch.randn(batch, segment, generator=torch.Generator().manual_seed(seed))
    return TrainingWorkload(model, torch.optim.Adam(model.parameters(), lr=2e-4), audio, log_mel(audio))
