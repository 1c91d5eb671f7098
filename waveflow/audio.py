"""Audio I/O and the log-mel spectrogram WaveFlow is conditioned on.

The mel recipe is part of the model's contract: a vocoder fed mels made any other way produces
noise (the failure behind several public WaveFlow issue threads). These constants reproduce the
recipe of the public WaveFlow implementations (NVIDIA Tacotron 2 STFT, librosa mel basis).

Frame/sample alignment: ``log_mel`` uses a centred STFT, so an input of ``T`` samples gives
``T // HOP_LENGTH + 1`` frames and frame ``j`` is centred on sample ``j * HOP_LENGTH``. The model
(:mod:`waveflow.model`) upsamples ``L`` frames to ``HOP_LENGTH * L`` samples and keeps the window
that starts half a hop in, so the conditioning of sample ``s`` comes mostly from frame
``round(s / HOP_LENGTH)``, the frame centred nearest to it. Consequently ``model(audio,
log_mel(audio))`` needs no trimming, and ``model.infer(log_mel(audio))`` returns
``HOP_LENGTH * (frames - 1)`` samples, i.e. exactly ``T`` when ``T`` is a multiple of the hop.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

from .files import atomic_write

SAMPLE_RATE = 22_050  # Hz, LJSpeech's native rate
N_FFT = 1024  # STFT size (46 ms at 22.05 kHz)
HOP_LENGTH = 256  # samples between frames; the upsampler's total stride
WIN_LENGTH = 1024  # Hann window length, equal to N_FFT
N_MELS = 80
F_MIN = 0.0  # Hz, lowest mel filter edge
F_MAX = 8_000.0  # Hz, highest mel filter edge (speech has little energy above)
LOG_FLOOR = 1e-5  # magnitudes are clamped here before the natural log (log(1e-5) = -11.51)


@lru_cache(maxsize=4)
def _mel_basis_np(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    # Slaney-normalised, Slaney-scale filters: librosa's defaults, as in the Tacotron 2 recipe.
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)


def mel_basis(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (N_MELS, N_FFT // 2 + 1) mel filter bank."""
    basis = _mel_basis_np(SAMPLE_RATE, N_FFT, N_MELS, F_MIN, F_MAX)
    return torch.as_tensor(basis, device=device, dtype=dtype)


def num_frames(num_samples: int) -> int:
    """Frames ``log_mel`` gives for ``num_samples`` samples (centred STFT)."""
    return num_samples // HOP_LENGTH + 1


def whole_hops(num_samples: int) -> int:
    """``num_samples`` rounded down to a whole number of hops: the longest crop whose log-mel frames
    line up with the model's output exactly (``model(audio, log_mel(audio))`` needs no trimming)."""
    return num_samples - num_samples % HOP_LENGTH


def samples_for(seconds: float, min_hops: int = 1) -> int:
    """Samples in ``seconds`` of audio, rounded to the nearest whole hop (at least ``min_hops``).

    This is how every experiment turns a length in seconds into a synthesis length: the mel of
    ``samples_for(s)`` samples has ``samples_for(s) // HOP_LENGTH + 1`` frames and synthesises to
    exactly ``samples_for(s)`` samples.
    """
    return HOP_LENGTH * max(min_hops, round(seconds * SAMPLE_RATE / HOP_LENGTH))


def log_mel(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Natural-log magnitude mel spectrogram, exactly as WaveFlow expects.

    Args:
        audio: float waveform in [-1, 1] at ``SAMPLE_RATE``, shape ``(time,)`` or ``(batch, time)``.

    Returns:
        ``(N_MELS, frames)`` or ``(batch, N_MELS, frames)`` with ``frames = time // HOP_LENGTH + 1``.

    Raises:
        ValueError: audio not 1-D/2-D, too short for the centred STFT, or not finite.
    """
    x = torch.as_tensor(audio)
    if not torch.is_floating_point(x):
        raise ValueError(f"log_mel: expected floating-point audio in [-1, 1], got dtype {x.dtype}")
    if x.dim() not in (1, 2):
        raise ValueError(f"log_mel: expected audio of shape (time,) or (batch, time), got {tuple(x.shape)}")
    if x.shape[-1] <= N_FFT // 2:
        raise ValueError(
            f"log_mel: audio has {x.shape[-1]} samples; expected more than {N_FFT // 2} (half the FFT size) "
            "for the reflect-padded centred STFT"
        )
    if not torch.isfinite(x).all():
        raise ValueError("log_mel: audio contains NaN or infinite samples; expected finite values")
    squeeze = x.dim() == 1
    x2 = x.unsqueeze(0) if squeeze else x
    dtype = x2.dtype if x2.dtype in (torch.float32, torch.float64) else torch.float32
    x2 = x2.to(dtype)
    window = torch.hann_window(WIN_LENGTH, device=x2.device, dtype=dtype)
    spec = torch.stft(
        x2,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    magnitude = spec.abs()  # magnitude, not power
    mel = torch.matmul(mel_basis(x2.device, dtype), magnitude)
    out = torch.log(torch.clamp(mel, min=LOG_FLOOR))
    return out[0] if squeeze else out


def load_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read a wav (or any libsndfile format) as float32 in [-1, 1].

    Returns:
        ``(audio, sample_rate)``; ``audio`` is ``(time,)`` for mono files and ``(channels, time)``
        otherwise. No resampling happens here: :mod:`waveflow.data` decides what to do with a
        wrong rate or channel count.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded (names the file and libsndfile's reason).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_wav: {p} does not exist")
    try:
        data, sample_rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types
        raise ValueError(f"load_wav: cannot read {p} as audio ({exc})") from exc
    audio = torch.from_numpy(np.ascontiguousarray(data.T))
    return (audio[0] if audio.shape[0] == 1 else audio), int(sample_rate)


def save_wav(path: str | os.PathLike, audio: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM atomically (temp file + rename), clipping to [-1, 1].

    A crash mid-write leaves either the previous file or none, never a truncated wav.
    """
    p = Path(path)
    x = torch.as_tensor(audio).detach().cpu().float()
    if x.dim() != 1:
        raise ValueError(f"save_wav: expected mono audio of shape (time,), got {tuple(x.shape)} for {p}")
    if not torch.isfinite(x).all():
        raise ValueError(f"save_wav: audio for {p} contains NaN or infinite samples")
    samples = x.clamp(-1.0, 1.0).numpy()
    return atomic_write(p, lambda tmp: sf.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV"))
