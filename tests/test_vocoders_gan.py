"""HiFi-GAN and MelGAN replicas: official parameter counts, exact output length, counted FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from waveflow.zoo.vocoders import hifigan, melgan
from waveflow.zoo.vocoders.base import VocoderSpec

SPECS: tuple[VocoderSpec, ...] = hifigan.VARIANTS + melgan.VARIANTS
IDS = [s.name for s in SPECS]


def _meta(spec: VocoderSpec) -> torch.nn.Module:
    with torch.device("meta"):
        return spec.build()


def test_names_groups_and_families() -> None:
    assert IDS == [
        "hifigan-small", "hifigan-medium", "hifigan-large", "hifigan-v1", "hifigan-v2", "hifigan-v3",
        "melgan-small", "melgan-medium", "melgan-large", "melgan",
    ]  # fmt: skip
    for spec in SPECS:
        assert spec.family == ("HiFi-GAN" if spec.name.startswith("hifigan") else "MelGAN")
        assert spec.group == ("follow-up" if spec.name.endswith(("small", "medium", "large")) else "reference")
        assert spec.paper and "@ " in spec.code  # a commit is named


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_is_the_official_generators(spec: VocoderSpec) -> None:
    model = _meta(spec)
    # Weight norm included (g + v per convolution), as the official module's parameters() counts.
    assert sum(p.numel() for p in model.parameters()) == spec.official_params
    assert model.hop_length == 256 and model.n_mels == 80
    assert model.sample_rate == (16_000 if spec.group == "follow-up" else 22_050)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.paper_params is not None], ids=lambda s: s.name)
def test_paper_figure_is_the_count_without_weight_norm_cut_to_two_decimals(spec: VocoderSpec) -> None:
    assert abs(spec.paper_params - spec.official_params / 1e6) <= 0.01 * spec.official_params / 1e6
    # The HiFi-GAN paper's table (13.92 / 0.92 / 1.46 M, MelGAN 4.26 M) counts the inference form, weight
    # norm removed (g dropped, v becomes the weight), and truncates to two decimals: rounding would give
    # 13.93 and 0.93, and the counts with weight norm 13.94 (13.936 M) rounded or 13.93 truncated.
    model = _meta(spec)
    gains = sum(p.numel() for n, p in model.named_parameters() if n.endswith("parametrizations.weight.original0"))
    assert gains > 0
    assert math.floor((spec.official_params - gains) / 1e4) / 100 == spec.paper_params


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_four_frames_give_four_hops_of_audio_in_range(spec: VocoderSpec) -> None:
    torch.manual_seed(0)
    model = spec.build().eval()
    with torch.no_grad():
        audio = model(torch.randn(1, model.n_mels, 4))
    assert audio.shape == (1, 4 * model.hop_length)
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1


def test_hifigan_takes_a_single_frame_and_a_batch() -> None:
    model = hifigan.HiFiGAN(hifigan.V2).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 80, 1)).shape == (3, 256)
    assert model.min_frames == 1


def test_melgan_refuses_fewer_frames_than_its_reflection_padding_needs() -> None:
    for cfg in (melgan.SMALL, melgan.OFFICIAL, melgan.LARGE):
        assert melgan.MelGAN(cfg).min_frames == 4
    model = melgan.MelGAN(melgan.SMALL)
    with pytest.raises(ValueError, match="MelGAN: 3 mel frame"):
        model(torch.randn(1, 80, 3))
    with pytest.raises(ValueError, match="MelGAN"):
        model.make_mel(1, 2 * 256 / model.sample_rate)
    with pytest.raises(ValueError, match="MelGAN: expected a mel"):
        model(torch.randn(1, 100, 8))


@pytest.mark.parametrize("build", [lambda: hifigan.HiFiGAN(hifigan.V3), lambda: melgan.MelGAN(melgan.SMALL)])
def test_folding_weight_norm_keeps_the_output_and_drops_the_gains(build) -> None:
    torch.manual_seed(0)
    model = build().eval()
    with_norm = sum(p.numel() for p in model.parameters())
    gains = sum(p.numel() for n, p in model.named_parameters() if n.endswith("original0"))
    mel = torch.randn(1, 80, 5)
    with torch.no_grad():
        before = model(mel)
        model.remove_weight_norm()  # under no_grad: the folded weights must stay parameters
        after = model(mel)
    assert sum(p.numel() for p in model.parameters()) == with_norm - gains
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", [hifigan.VARIANTS[3], melgan.VARIANTS[3]], ids=lambda s: s.name)
def test_flop_counter_counts_one_forward(spec: VocoderSpec) -> None:
    model = _meta(spec)
    mel = torch.randn(1, model.n_mels, 8, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        audio = model(mel)
    assert audio.shape == (1, 8 * model.hop_length)
    assert counter.get_total_flops() > 0
