"""FLOP counting: FlopCounterMode (primary, forward + backward of a training step) against thop with the
WaveFlow rules and against the closed form."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from waveflow.audio import HOP_LENGTH, SAMPLE_RATE
from waveflow.cli import main
from waveflow.measures.flops import (
    COUNT_SAMPLES,
    aten_flops,
    aten_training_flops,
    count,
    count_flops,
    flops_per_audio_second,
    thop_macs,
    thop_rules,
)
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


# ------------------------------------------------------------------------------------------
# any model: count_flops and flops_per_audio_second
def test_linear_and_conv1d_count_two_flops_per_multiply_accumulate():
    linear, x = torch.nn.Linear(16, 8), torch.randn(4, 16)
    assert count_flops(linear, x) == 2 * 4 * 16 * 8  # the bias add is elementwise, not counted
    conv, a = torch.nn.Conv1d(3, 5, kernel_size=7), torch.randn(2, 3, 50)
    assert count_flops(conv, a) == 2 * (2 * 44 * 5) * (3 * 7)  # output positions x (in channels x kernel)
    grouped = torch.nn.Conv1d(4, 6, kernel_size=3, groups=2, padding=1)
    assert count_flops(grouped, torch.randn(1, 4, 10)) == 2 * (10 * 6) * (2 * 3)


def test_a_plain_function_and_keyword_inputs_count():
    def attention_scores(q, k, scale=1.0):
        return (q @ k.transpose(-1, -2)) * scale

    q, k = torch.randn(2, 10, 4), torch.randn(2, 12, 4)
    assert count_flops(attention_scores, q, k, scale=0.5) == 2 * 2 * 10 * 12 * 4
    assert count_flops(lambda pair: pair[0] @ pair[1], (torch.randn(3, 5), torch.randn(5, 7))) == 2 * 3 * 5 * 7


def test_meta_counts_equal_real_counts_and_leave_the_module_alone():
    model = torch.nn.Sequential(
        torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(1, 8, 5, padding=2)),
        torch.nn.Tanh(),
        torch.nn.ConvTranspose1d(8, 4, 4, stride=2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 66, 3),
    )
    x = torch.randn(2, 1, 32)
    assert count_flops(model, x, device="meta") == count_flops(model, x) > 0
    assert count_flops(model, x, backward=True, device="meta") == count_flops(model, x, backward=True)
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())  # not moved, no grads left
    assert count_flops(model, x, device=torch.device("meta")) == count_flops(model, x)


def test_backward_counts_the_gradient_products_of_a_loss_or_of_the_sum():
    linear, x = torch.nn.Linear(16, 8), torch.randn(4, 16)
    forward = count_flops(linear, x)
    assert count_flops(linear, x, backward=True) == 2 * forward  # weight gradient; the input needs none
    assert count_flops(linear, x.clone().requires_grad_(), backward=True) == 3 * forward
    loss = count_flops(lambda a: linear(a).pow(2).mean(), x, backward=True)  # a scalar loss the caller returns
    assert loss == 2 * forward
    assert linear.weight.grad is not None  # a plain callable's leaves accumulate, as a training step's would


def test_flops_per_audio_second_divides_by_the_audio_the_inputs_stand_for():
    conv = torch.nn.Conv1d(1, 4, 3, padding=1)
    one_second = torch.randn(1, 1, 16_000)
    assert flops_per_audio_second(conv, one_second, audio_seconds=1.0) == count_flops(conv, one_second)
    two = flops_per_audio_second(conv, torch.randn(2, 1, 16_000), audio_seconds=2.0, device="meta")
    assert two == count_flops(conv, one_second)
    for bad in (0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="audio_seconds"):
            flops_per_audio_second(conv, one_second, audio_seconds=bad)


def test_a_model_that_cannot_run_on_meta_says_so():
    class ReadsValues(torch.nn.Module):
        def forward(self, x):
            return x * float(x.abs().max())

    with pytest.raises(RuntimeError, match=r"ReadsValues cannot run on the meta device .*device=None"):
        count_flops(ReadsValues(), torch.randn(3), device="meta")
    assert count_flops(ReadsValues(), torch.randn(3)) == 0  # on real tensors it counts (no products)
    with pytest.raises(ValueError, match="device='cuda:0'; expected None"):
        count_flops(torch.nn.Linear(2, 2), torch.randn(1, 2), device="cuda:0")
    with pytest.raises(ValueError, match="requires grad"):
        count_flops(lambda a: a * 2, torch.randn(3), backward=True)


def test_count_flops_agrees_with_the_waveflow_density_count():
    cfg = tiny_config(h=8, r=8)
    with torch.device("meta"):
        model = WaveFlow(cfg, weight_norm=False)
    audio, mel = _meta_inputs(cfg)
    with torch.no_grad():
        expected = aten_flops(model, (audio, mel))
    assert count_flops(model, audio, mel) == expected
    assert flops_per_audio_second(model, audio, mel, audio_seconds=COUNT_SAMPLES / SAMPLE_RATE) == pytest.approx(
        count(cfg, "density").flops_per_audio_second, rel=1e-12
    )
