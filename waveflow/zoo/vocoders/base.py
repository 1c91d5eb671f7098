"""The common face of the vocoder replicas: a mel spectrogram in, a waveform out.

The vocoder table (:mod:`waveflow.experiments.vocoders`) drives every model through this one
contract, whatever its family (GAN, flow, diffusion, Fourier-domain):

* ``forward(mel)`` maps ``(batch, n_mels, frames)`` to ``(batch, frames * hop_length)``; a
  diffusion model runs *all* of its reverse steps inside this call, and a flow model its whole
  inverse, so that the time, energy and counted FLOPs of one call are those of one synthesis;
* ``make_mel(batch, seconds)`` gives a random mel of the model's own bands, hop and rate;
* ``min_frames`` is the shortest mel the model accepts (receptive field, squeeze or padding
  constraints); shorter inputs are refused with a one-line error naming the model.

Weights are random: cost does not depend on their values, and no trained weights ship with the
project. Every replica is built from its paper and official implementation; the parameter count of
each configuration equals the official generator's (``tests/test_vocoders*.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Device = torch.device | str | None


class Vocoder(nn.Module):
    """Base class of the vocoder replicas (see the module docstring for the contract).

    Subclasses set the four attributes in ``__init__`` and implement :meth:`forward`.
    ``steps`` is the number of network evaluations one synthesis takes (diffusion steps; 1 for a
    GAN, flows count 1 for their single inverse pass).
    """

    sample_rate: int
    hop_length: int
    n_mels: int
    steps: int = 1

    @property
    def min_frames(self) -> int:
        """Shortest mel (in frames) this model synthesises from."""
        return 1

    def frames_for(self, seconds: float) -> int:
        """Mel frames that cover ``seconds`` of audio at this model's hop and rate."""
        return max(1, math.ceil(seconds * self.sample_rate / self.hop_length))

    def make_mel(self, batch: int = 1, seconds: float = 1.0, device: Device = None) -> Tensor:
        """A random log-mel-like input of ``batch`` clips covering ``seconds`` of audio each."""
        frames = self.frames_for(seconds)
        if frames < self.min_frames:
            raise ValueError(
                f"{type(self).__name__}: {seconds:g} s is {frames} mel frame(s), shorter than the "
                f"{self.min_frames} frames this model needs; expected at least "
                f"{self.min_frames * self.hop_length / self.sample_rate:.3g} s"
            )
        return torch.randn(batch, self.n_mels, frames, device=device)

    def forward(self, mel: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def check_mel(model: Vocoder, mel: Tensor) -> None:
    """ValueError naming ``model`` unless ``mel`` is ``(batch, n_mels, frames >= min_frames)``."""
    name = type(model).__name__
    if mel.dim() != 3 or mel.shape[1] != model.n_mels:
        raise ValueError(f"{name}: mel must have shape (batch, {model.n_mels}, frames), got {tuple(mel.shape)}")
    if mel.shape[-1] < model.min_frames:
        raise ValueError(
            f"{name}: a mel of {mel.shape[-1]} frame(s) is shorter than the {model.min_frames} frames "
            "this model needs; give a longer mel"
        )


@dataclass(frozen=True)
class VocoderSpec:
    """One configuration of one vocoder, with the sources behind its size.

    ``official_params`` is the parameter count of the official implementation's generator in this
    configuration (what the test asserts, exactly); ``paper_params`` the figure a paper prints for
    it, in millions, where one does (``None`` otherwise); ``paper`` and ``code`` name the sources
    (code with the commit read); ``notes`` states every choice the sources leave open.
    """

    name: str
    family: str
    group: str  # "follow-up" (Douwes et al. 2023), "reference" (as the HiFi-GAN paper lists), "current"
    build: Callable[[], Vocoder]
    official_params: int
    paper_params: float | None
    paper: str
    code: str
    notes: str = ""
