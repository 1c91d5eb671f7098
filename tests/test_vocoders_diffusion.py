"""The diffusion vocoder replicas: DiffWave and WaveGrad (follow-up sizes and the published reference networks).

Sizes equal the official modules' ``parameters()`` exactly (counted by instantiating the official
code; the numbers are in the specs); one synthesis maps F mel frames to F * hop samples and runs
*every* reverse step inside ``forward``, so the FLOPs counted for one call are the steps' sum.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from waveflow.zoo.vocoders import diffwave, wavegrad
from waveflow.zoo.vocoders.base import Vocoder, VocoderSpec
from waveflow.zoo.vocoders.diffwave import DiffWave, DiffWaveConfig
from waveflow.zoo.vocoders.wavegrad import WaveGrad

SPECS: tuple[VocoderSpec, ...] = diffwave.VARIANTS + wavegrad.VARIANTS
IDS = [spec.name for spec in SPECS]
BY_NAME = {spec.name: spec for spec in SPECS}

#: name -> (sample rate, hop, mel bands, network calls per synthesis)
EXPECTED = {
    "diffwave-small": (16_000, 256, 80, 6),
    "diffwave-medium": (16_000, 256, 80, 6),
    "diffwave-large": (16_000, 256, 80, 6),
    "diffwave": (22_050, 256, 80, 6),
    "wavegrad-small": (16_000, 512, 80, 50),
    "wavegrad-medium": (16_000, 512, 80, 50),
    "wavegrad-large": (16_000, 512, 80, 50),
    "wavegrad": (24_000, 300, 128, 1000),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny CPU forwards: one thread (conftest)


def _build(spec: VocoderSpec, max_steps: int | None = None) -> Vocoder:
    """The spec's model; a WaveGrad with more than ``max_steps`` steps gets its schedule cut to that many.

    Only the schedule's length changes (the network is the spec's), to keep 50- and 1000-step
    syntheses out of CPU tests; :func:`test_every_reverse_step_calls_the_network` runs the full ones.
    """
    model = spec.build()
    if max_steps is not None and isinstance(model, WaveGrad) and model.steps > max_steps:
        start, end, _ = model.config.betas
        model = WaveGrad(replace(model.config, betas=(start, end, max_steps)))
    return model


def test_the_table_rows() -> None:
    assert IDS == list(EXPECTED)
    for spec in SPECS:
        assert spec.family == ("DiffWave" if spec.name.startswith("diffwave") else "WaveGrad")
        assert spec.group == ("reference" if spec.name in ("diffwave", "wavegrad") else "follow-up")
        assert "@" in spec.code and spec.paper and spec.notes
        with torch.device("meta"):
            model = spec.build()
        assert (model.sample_rate, model.hop_length, model.n_mels, model.steps) == EXPECTED[spec.name]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_is_the_official_modules(spec: VocoderSpec) -> None:
    with torch.device("meta"):
        model = spec.build()
    assert sum(p.numel() for p in model.parameters()) == spec.official_params


def test_diffwave_counts_include_the_step_mlp_and_the_mel_upsampler() -> None:
    with torch.device("meta"):
        model = BY_NAME["diffwave"].build()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.denoiser.diffusion_embedding) == 128 * 512 + 512 + 512 * 512 + 512
    assert count(model.denoiser.spectrogram_upsampler) == 2 * (3 * 32 + 1)
    per_layer = (64 * 128 * 3 + 128) + (512 * 64 + 64) + (80 * 128 + 128) + (64 * 128 + 128)
    assert count(model) == 328_704 + 194 + 128 + 30 * per_layer + (64 * 64 + 64) + 65 == 2_619_971


@pytest.mark.parametrize(
    "name",
    ["diffwave-medium", "diffwave-large", "diffwave"],
)
def test_diffwave_paper_figures_are_within_two_percent(name: str) -> None:
    # DiffWave's Table 1 prints 2.64 M (BASE, C = 64) and 6.91 M (LARGE, C = 128) to two decimals;
    # they are 0.8 % and 0.4 % above the official module (2,619,971 and 6,885,315), so they are no
    # rounding of it (an earlier revision of the code, presumably): checked to within 2 %.
    spec = BY_NAME[name]
    assert spec.paper_params is not None
    official_m = spec.official_params / 1e6
    assert abs(spec.paper_params - official_m) <= 0.02 * official_m


def test_wavegrad_paper_figure_is_the_count_cut_to_whole_millions() -> None:
    # WaveGrad's paper says "15M" for Base. LMNT's module has 15,920,993 (6 % more), so the 2 %
    # check the other rows get cannot hold: Google's code is unpublished and the paper's figure is
    # only readable as the count cut (not rounded) to whole millions. Checked in that form.
    spec = BY_NAME["wavegrad"]
    assert spec.paper_params == 15.0
    assert int(spec.official_params // 1_000_000) == 15
    assert spec.official_params / 1e6 > 1.02 * spec.paper_params
    assert all(BY_NAME[n].paper_params is None for n in ("diffwave-small", "wavegrad-small", "wavegrad-large"))


def test_fast_schedule_sits_between_the_training_steps_as_upstream_places_it() -> None:
    # inference.py's twiddle search with numpy on params.py's schedules gives these fractional steps.
    upstream = (0.0, 0.8941341034416549, 4.086654023014474, 10.451816523911088, 22.992493307367457, 42.9186430599322)
    assert DiffWave().step_positions == pytest.approx(upstream, abs=1e-9)
    full = DiffWave(DiffWaveConfig(inference_betas=None))  # predict() without --fast
    assert full.steps == 50
    assert full.step_positions == pytest.approx(tuple(range(50)), abs=1e-6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_synthesis_gives_frames_times_hop_samples(spec: VocoderSpec) -> None:
    torch.manual_seed(0)
    model = _build(spec, max_steps=3).eval()
    frames = 2
    with torch.no_grad():
        audio = model(torch.randn(2, model.n_mels, frames))
    assert audio.shape == (2, frames * model.hop_length)
    assert torch.isfinite(audio).all()


class _CountingDenoiser(nn.Module):
    """Stands in for the network: records each call's step / noise level and returns zeros."""

    def __init__(self, hop: int) -> None:
        super().__init__()
        self.hop = hop
        self.levels: list[float] = []

    def forward(self, audio: Tensor, level: Tensor, mel: Tensor) -> Tensor:
        assert audio.shape == (mel.shape[0], mel.shape[-1] * self.hop) and level.dim() == 1
        self.levels.append(float(level[0]))
        return torch.zeros_like(audio)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_reverse_step_calls_the_network(spec: VocoderSpec) -> None:
    model = spec.build().eval()
    counter = _CountingDenoiser(model.hop_length)
    model.denoiser = counter  # the full schedule (1000 steps for the reference WaveGrad), at no network cost
    with torch.no_grad():
        audio = model(torch.randn(1, model.n_mels, 1))
    assert audio.shape == (1, model.hop_length)
    assert len(counter.levels) == model.steps == EXPECTED[spec.name][3]
    # Reverse order: DiffWave's step index falls to 0, WaveGrad's noise level sqrt(abar) rises to ~1
    # (float32 levels: neighbours of the 1000-step schedule may round equal, hence no strictness).
    ordered = counter.levels[::-1] if isinstance(model, DiffWave) else counter.levels
    assert ordered == sorted(ordered) and ordered[0] < ordered[-1]


def _flops(fn, *args: Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_flop_counter_counts_every_reverse_step(spec: VocoderSpec) -> None:
    # On the meta device: shapes only. DiffWave runs its real 6 steps; WaveGrad's schedule is cut
    # to 4 steps here (the count per step does not depend on the schedule's length).
    with torch.device("meta"):
        model = _build(spec, max_steps=4).eval()
    frames = 2
    mel = torch.empty(1, model.n_mels, frames, device="meta")
    audio = torch.empty(1, frames * model.hop_length, device="meta")
    level = torch.full((1,), 1.5 if isinstance(model, DiffWave) else 0.9, device="meta")
    total, one = _flops(model, mel), _flops(model.denoiser, audio, level, mel)
    assert one > 0
    assert total == pytest.approx(model.steps * one, rel=0.01)
    if isinstance(model, DiffWave):
        assert model.steps == 6
