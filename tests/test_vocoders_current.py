"""Vocos and BigVGAN replicas: official parameter counts, exact output length, counted FLOPs, meta device."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from waveflow.zoo.vocoders import bigvgan, vocos
from waveflow.zoo.vocoders.base import VocoderSpec

SPECS: tuple[VocoderSpec, ...] = vocos.VARIANTS + bigvgan.VARIANTS
IDS = [s.name for s in SPECS]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny CPU forwards: one thread (conftest)


def _meta(spec: VocoderSpec) -> torch.nn.Module:
    with torch.device("meta"):
        return spec.build()


def test_names_groups_and_families() -> None:
    assert IDS == ["vocos", "bigvgan", "bigvgan-base"]
    for spec in SPECS:
        assert spec.family == ("Vocos" if spec.name == "vocos" else "BigVGAN")
        assert spec.group == "current"
        assert spec.paper and "@ " in spec.code  # a commit is named


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_is_the_official_generators(spec: VocoderSpec) -> None:
    model = _meta(spec)
    # The counts of the official modules built from their configurations (BigVGAN with weight norm on,
    # g + v per convolution; Vocos has no weight norm and its mel feature extractor no parameters).
    assert sum(p.numel() for p in model.parameters()) == spec.official_params
    assert (model.sample_rate, model.hop_length, model.n_mels) == (24_000, 256, 100)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_paper_figure_is_the_official_count_rounded(spec: VocoderSpec) -> None:
    # Vocos prints 13.5 M (13.53 M to one decimal); BigVGAN's text says 112 M and 14 M (112.45 M and
    # 14.03 M with weight norm, 112.41 M / 14.02 M without, to the nearest million either way).
    official = spec.official_params / 1e6
    assert abs(spec.paper_params - official) <= 0.02 * official
    decimals = 1 if spec.name == "vocos" else 0
    assert round(official, decimals) == spec.paper_params


def test_bigvgan_filters_are_buffers_and_snake_parameters_are_the_official_ones() -> None:
    model = _meta(bigvgan.VARIANTS[1])  # base
    buffers = dict(model.named_buffers())
    assert buffers and all(name.endswith("filter") for name in buffers)
    assert all(b.shape == (1, 1, 12) for b in buffers.values())
    names = [n for n, _ in model.named_parameters()]
    # 4 stages x 3 AMP blocks x 6 activations + activation_post, each with log-scale alpha and beta
    assert sum(n.endswith(".act.alpha") for n in names) == sum(n.endswith(".act.beta") for n in names) == 73
    assert "conv_post.bias" in names and "resblocks.0.activations.1.downsample.lowpass.filter" in buffers


def test_kaiser_sinc_filter_is_a_normalised_symmetric_low_pass() -> None:
    taps = bigvgan.kaiser_sinc_filter(0.25, 0.3, 12).flatten()
    assert taps.sum().item() == pytest.approx(1.0)
    assert torch.allclose(taps, taps.flip(0))
    # a tone at Nyquist (alternating signs) is strongly attenuated, DC passes
    nyquist = (taps * torch.tensor([(-1.0) ** i for i in range(12)])).sum().abs().item()
    assert nyquist < 0.05


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_few_frames_give_that_many_hops_of_audio_and_counted_flops(spec: VocoderSpec) -> None:
    torch.manual_seed(0)
    model = spec.build().eval()
    frames = 2
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        audio = model(torch.randn(2, model.n_mels, frames))
    assert audio.shape == (2, frames * model.hop_length)
    assert torch.isfinite(audio).all()
    assert counter.get_total_flops() > 0
    if spec.family == "BigVGAN":
        assert audio.abs().max() <= 1


def test_vocos_takes_one_frame_and_both_paddings_give_whole_hops() -> None:
    model = vocos.Vocos().eval()
    assert model.min_frames == 1
    with torch.no_grad():
        assert model(torch.randn(1, 100, 1)).shape == (1, 256)
        same = vocos.Vocos(replace(vocos.MEL_24KHZ, padding="same")).eval()
        assert same(torch.randn(1, 100, 3)).shape == (1, 768)
    with pytest.raises(ValueError, match="Vocos: expected a mel"):
        model(torch.randn(1, 80, 3))


def test_vocos_flop_count_is_the_network_without_the_fft() -> None:
    # FlopCounterMode counts every matmul and convolution (2 x MACs) and nothing for the inverse FFT:
    # per frame 2 x (embed 100*512*7 + 8 x (512*7 + 2*512*1536) + head 512*1026), with T + 1 frames
    # decoded for T (the repeated last frame, see the module docstring).
    model = vocos.Vocos().eval()
    frames = 3
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 100, frames))
    per_frame = 2 * (100 * 512 * 7 + 8 * (512 * 7 + 2 * 512 * 1536) + 512 * 1026)
    assert counter.get_total_flops() == per_frame * (frames + 1)


def test_bigvgan_takes_one_frame_and_v2_drops_the_final_bias() -> None:
    model = bigvgan.BigVGAN(bigvgan.BASE_24KHZ).eval()
    assert model.min_frames == 1
    with torch.no_grad():
        assert model(torch.randn(3, 100, 1)).shape == (3, 256)
    with pytest.raises(ValueError, match="BigVGAN: expected a mel"):
        model(torch.randn(1, 80, 2))
    with torch.device("meta"):
        v2 = bigvgan.BigVGAN(bigvgan.V2_24KHZ)
    assert sum(p.numel() for p in v2.parameters()) == bigvgan.VARIANTS[0].official_params - 1


def test_bigvgan_builds_and_runs_on_the_meta_device() -> None:
    model = _meta(bigvgan.VARIANTS[1])
    assert all(b.device.type == "meta" for b in model.buffers())
    audio = model(torch.randn(1, 100, 2, device="meta"))
    assert audio.shape == (1, 512) and audio.device.type == "meta"
