"""waveflow.audio: the log-mel recipe, frame alignment and wav I/O."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from waveflow import WaveFlow
from waveflow.audio import (
    F_MAX,
    HOP_LENGTH,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    load_wav,
    log_mel,
    num_frames,
    save_wav,
)
from waveflow.paths import LJSPEECH_MINI

CLIP = LJSPEECH_MINI / "wavs" / "LJ001-0002.wav"


def test_bundled_clip_loads_as_mono_float_at_22050():
    audio, sr = load_wav(CLIP)
    assert sr == SAMPLE_RATE
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert audio.shape[0] == 41_885  # the README of ljspeech-mini lists 41885 samples
    assert 0.01 < audio.abs().max() <= 1.0


def test_log_mel_equals_librosa_magnitude_mel():
    audio, _ = load_wav(CLIP)
    ours = log_mel(audio).numpy()
    ref = librosa.feature.melspectrogram(
        y=audio.numpy(),
        sr=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=N_FFT,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=N_MELS,
        fmin=0.0,
        fmax=F_MAX,
    )
    ref = np.log(np.maximum(ref, LOG_FLOOR))
    assert ours.shape == ref.shape == (N_MELS, num_frames(audio.shape[0]))
    assert np.abs(ours - ref).max() < 1e-3


def test_log_mel_batched_equals_unbatched_and_floors_silence():
    g = torch.Generator().manual_seed(0)
    batch = 0.1 * torch.randn(3, 2048, generator=g)
    batch[1] = 0.0
    out = log_mel(batch)
    assert out.shape == (3, N_MELS, 2048 // HOP_LENGTH + 1)
    assert torch.allclose(out[2], log_mel(batch[2]), atol=1e-5)
    assert torch.allclose(out[1], torch.full_like(out[1], float(np.log(LOG_FLOOR))))


def test_frames_match_what_the_model_expects():
    audio, _ = load_wav(CLIP)
    audio = audio[: HOP_LENGTH * 16]  # a real clip, cropped to a hop multiple
    model = WaveFlow()
    mel = log_mel(audio)
    z, _ = model(audio, mel)  # no trimming needed
    assert z.shape == audio.shape


@pytest.mark.parametrize(
    "bad,pattern",
    [
        (torch.zeros(100), "more than 512"),
        (torch.zeros(2, 3, 4000), "shape"),
        (torch.tensor([0.0, float("nan")] * 600), "NaN"),
        (torch.zeros(2000, dtype=torch.int16), "floating-point"),
    ],
)
def test_log_mel_rejects_bad_audio(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        log_mel(bad)


def test_save_then_load_round_trips_within_16_bit_precision(tmp_path):
    x = 0.5 * torch.sin(torch.linspace(0, 100, 5000))
    path = save_wav(tmp_path / "sub" / "x.wav", x)
    y, sr = load_wav(path)
    assert sr == SAMPLE_RATE and y.shape == x.shape
    assert (y - x).abs().max() < 1.0 / 32768 + 1e-6
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temp file left behind


def test_save_wav_keeps_the_old_file_when_input_is_bad(tmp_path):
    path = save_wav(tmp_path / "x.wav", torch.zeros(100))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        save_wav(path, torch.tensor([0.0, float("nan")]))
    assert path.read_bytes() == before


def test_load_wav_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.wav"):
        load_wav(tmp_path / "nothere.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(ValueError, match="bad.wav"):
        load_wav(bad)
