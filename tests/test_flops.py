"""FLOP counting: FlopCounterMode (primary, forward + backward of a training step) against thop with the
WaveFlow rules and against the closed form."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from waveflow.audio import HOP_LENGTH, SAMPLE_RATE
from waveflow.cli import main
from waveflow.measures.flops import COUNT_SAMPLES, aten_flops, aten_training_flops, count, thop_macs, thop_rules
from waveflow.model import PAPER_CONFIGS, FastSynthesizer, WaveFlow


def closed_form_macs(h: int, r: int, n_flows: int = 8, n_layers: int = 8, n_mels: int = 80) -> float:
    """MACs for COUNT_SAMPLES samples, written out by hand from the architecture."""
    per_position = (
        r  # front 1x1, 1 -> r
        + n_layers * (9 * r * 2 * r + n_mels * 2 * r)  # dilated 3x3 r -> 2r, conditioning 80 -> 2r
        + (n_layers - 1) * r * 2 * r
        + r * r  # res/skip 1x1 (the last layer: skip only)
        + r * 2  # output 1x1 r -> 2
    )
    positions = COUNT_SAMPLES * (h - 1) // h  # the coupling net sees rows 0..h-2
    frames = COUNT_SAMPLES // HOP_LENGTH + 1
    upsampler = n_mels * frames * 96 + n_mels * frames * 16 * 96  # input positions x kernel (3 x 32)
    return n_flows * per_position * positions + upsampler


@pytest.mark.parametrize("name", ["WF1", "WF2"])
@pytest.mark.parametrize("direction", ["density", "synthesis"])
def test_thop_count_matches_aten_and_closed_form(name, direction):
    cfg = PAPER_CONFIGS[name]
    c = count(cfg, direction, name)
    assert c.relative_difference <= 0.02
    expected = closed_form_macs(cfg.n_height, cfg.res_channels) * SAMPLE_RATE / COUNT_SAMPLES
    assert c.macs_per_audio_second == pytest.approx(expected, rel=1e-9)
    assert c.thop_flops_per_audio_second == 2 * c.macs_per_audio_second
    assert c.flops_per_audio_second == c.forward_flops_per_audio_second  # no backward outside training
    assert c.flops_per_audio_second == pytest.approx(2 * expected, rel=0.02)  # the primary count


def test_training_step_is_counted_forward_and_backward():
    """A step's backward is counted, not assumed: two gradient convolutions per forward one, except the
    input gradient of the very first layer (the audio needs none)."""
    cfg = PAPER_CONFIGS["WF2"]
    train = count(cfg, "training", "WF2")
    density = count(cfg, "density", "WF2")
    assert train.forward_flops_per_audio_second == pytest.approx(density.flops_per_audio_second, rel=1e-9)
    assert 1.99 < train.backward_to_forward < 2.0
    assert train.relative_difference <= 0.02  # thop cross-checks the forward part
    assert train.flops_per_audio_second == pytest.approx(3 * density.flops_per_audio_second, rel=0.01)


def test_weight_normed_convs_are_not_silently_skipped():
    # Without the custom rules thop counts ParametrizedConv2d and CausalConv2d as zero (thop matches
    # classes exactly), leaving about 0.02 GMAC in total.
    c = count(PAPER_CONFIGS["WF2"], "density")
    assert c.macs_per_audio_second > 100e9


def _meta_inputs(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio and mel of the count window on meta, as ``count`` uses them."""
    return (
        torch.zeros(1, COUNT_SAMPLES, device="meta"),
        torch.zeros(1, cfg.n_mels, COUNT_SAMPLES // HOP_LENGTH + 1, device="meta"),
    )


@pytest.mark.parametrize("weight_norm", [True, False])
def test_thop_rules_cover_every_convolution_class(weight_norm):
    with torch.device("meta"):
        model = WaveFlow(tiny_config(h=8, r=8), weight_norm=weight_norm)
    rules = thop_rules(model)
    convs = {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)}
    assert convs - {torch.nn.Conv2d} <= set(rules), convs - set(rules)


def test_counting_the_plain_weight_build_changes_no_count():
    """``count`` builds plain weights on meta (weight norm adds no product either counter sees, and its
    norms cost seconds there): the weight-normed model, counted directly, gives the same numbers."""
    cfg = tiny_config(h=8, r=8, n_flows=2)
    audio, mel = _meta_inputs(cfg)
    counts = []
    for weight_norm in (True, False):
        with torch.device("meta"):
            model = WaveFlow(cfg, weight_norm=weight_norm)
        with torch.no_grad():
            density = aten_flops(model, (audio, mel)), thop_macs(model, (audio, mel))
        counts.append((density, aten_training_flops(model.train(), audio, mel)))
    assert counts[0] == counts[1]
    scale = SAMPLE_RATE / COUNT_SAMPLES
    (aten, macs), (forward, total) = counts[0]
    c = count(cfg, "training")
    assert (c.forward_flops_per_audio_second, c.flops_per_audio_second) == (forward * scale, total * scale)
    assert c.macs_per_audio_second == macs * scale


def test_bad_direction_is_rejected():
    with pytest.raises(ValueError, match="direction 'backward' unknown"):
        count(PAPER_CONFIGS["WF2"], "backward")


def test_cli_csv_columns(capsys):
    assert main(["flops", "--format", "csv", "--config", "WF1", "--direction", "density"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (
        "config,direction,flops_per_audio_second,forward_flops_per_audio_second,"
        "thop_flops_per_audio_second,macs_per_audio_second"
    )
    cfg, direction, flops, forward, thop_flops, macs = lines[1].split(",")
    assert (cfg, direction) == ("WF1", "density") and int(thop_flops) == pytest.approx(2 * int(macs), abs=2)
    assert int(flops) == int(forward)


def test_cli_training_direction_prints_the_step(capsys):
    assert main(["flops", "--config", "WF1", "--direction", "training"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("WF1"))
    assert row.split()[1] == "training" and 1.99 < float(row.split()[4]) <= 2.0  # bwd/fwd column
    assert "forward + backward" in out


@pytest.mark.parametrize("n_flows", [1, 3])
def test_synthesis_count_from_one_and_two_flows_equals_the_full_count(n_flows):
    """``count`` takes synthesis as upsampling + n_flows x one flow; running every flow agrees exactly."""
    cfg = tiny_config(h=8, r=8, n_flows=n_flows)
    audio, mel = _meta_inputs(cfg)
    with torch.device("meta"):
        synth = FastSynthesizer(WaveFlow(cfg))
    with torch.no_grad():
        full = aten_flops(synth, (mel, 1.0, audio))
    assert full > 0
    assert count(cfg, "synthesis").flops_per_audio_second == full * (SAMPLE_RATE / COUNT_SAMPLES)
