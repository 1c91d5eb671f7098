"""A model that is not WaveFlow, at a rate that is not 22.05 kHz, taken through the whole toolkit: its FLOPs
per second of audio, its mel distances, and a Pareto table of the results with ``waveflow pareto``."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
from torch import nn

from waveflow.cli import main
from waveflow.measures import count_flops, flops_per_audio_second, log_mel_l1, mel_cepstral_distortion

RATE, HOP, N_MELS = 16_000, 160, 80


class ToyVocoder(nn.Module):
    """Mel frames -> 16 kHz audio: a 3-tap convolution, then a transposed convolution of one hop."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pre = nn.Conv1d(N_MELS, channels, 3, padding=1)
        self.up = nn.ConvTranspose1d(channels, 1, HOP, stride=HOP)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(torch.tanh(self.pre(mel)))).squeeze(1)


def hand_count(channels: int, batch: int, frames: int) -> int:
    """2 x MACs: the convolution per output position, the transposed one per input position."""
    return 2 * batch * frames * (channels * N_MELS * 3) + 2 * batch * frames * (channels * HOP)


@pytest.mark.parametrize("channels", [8, 32])
def test_flops_of_a_vocoder_per_second_of_16_khz_audio(channels):
    torch.manual_seed(0)
    model, mel = ToyVocoder(channels), torch.randn(2, N_MELS, 100)  # 2 clips of 100 frames: 2 s at 16 kHz
    assert count_flops(model, mel) == hand_count(channels, 2, 100)
    assert count_flops(model, mel, device="meta") == count_flops(model, mel)
    per_second = flops_per_audio_second(model, mel, audio_seconds=2 * 100 * HOP / RATE)
    assert per_second == hand_count(channels, 1, RATE // HOP)
    # a training step: forward plus the weight gradients of both layers and the input gradient of the second
    assert count_flops(model, mel, backward=True) == 3 * count_flops(model, mel) - 2 * 2 * 100 * channels * N_MELS * 3


def test_mel_distances_of_its_audio_at_16_khz():
    torch.manual_seed(0)
    audio = ToyVocoder(8)(torch.randn(1, N_MELS, 50))[0].detach()
    assert audio.shape == (50 * HOP,)
    assert log_mel_l1(audio, audio, sample_rate=RATE) == 0.0
    assert mel_cepstral_distortion(audio, audio, sample_rate=RATE) == 0.0
    other = ToyVocoder(8)(torch.randn(1, N_MELS, 50))[0].detach()
    assert (
        log_mel_l1(audio, other, sample_rate=RATE) > 0 and mel_cepstral_distortion(audio, other, sample_rate=RATE) > 0
    )


def test_a_results_table_of_counted_models_through_the_pareto_command(tmp_path, capsys):
    mel = torch.randn(1, N_MELS, RATE // HOP)  # one second
    rows = []
    for name, channels, mos in (("small", 8, 3.1), ("medium", 32, 3.6), ("large", 128, 4.2), ("wasteful", 256, 3.9)):
        gflops = count_flops(ToyVocoder(channels), mel, device="meta") / 1e9
        rows.append({"model": name, "pred_mos": mos, "gflops_per_s": gflops, "energy_j": gflops * 0.5})
    results = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(results, index=False)
    out = tmp_path / "front.png"
    argv = ["pareto", str(results), "--objectives", "pred_mos:max", "energy_j:min", "--label", "model"]
    assert main([*argv, "--out", str(out), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False).set_index("model")
    assert table.pareto_optimal.to_dict() == {"small": True, "medium": True, "large": True, "wasteful": False}
    assert table.loc["wasteful", "dominated_by"] == "large"
    assert out.exists() and pd.read_csv(out.with_suffix(".csv")).shape == (4, 6)
