"""The Table 1 replicas: exact parameter counts, shapes, runnable tiny variants, MAC counts, bad inputs.

Full-size models are only ever built on the meta device (shapes, no memory); everything that
computes values runs on tiny variants on the CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from waveflow.zoo import (
    MODEL_NAMES,
    FloWaveNetConfig,
    ForwardCost,
    GANSynth,
    GANSynthConfig,
    SampleRNNConfig,
    build,
    forward_cost,
    get_spec,
    make_batch,
    make_inputs,
    training_step,
    training_step_cost,
)
from waveflow.zoo.flowavenet import Flow
from waveflow.zoo.samplernn import GRU
from waveflow.zoo.sing import CountableLSTM, lstm_macs
from waveflow.zoo.wavegan import PhaseShuffle

# Exact parameter counts derived from the official configurations (waveflow/zoo/REFERENCES.md).
EXPECTED_PARAMS = {
    "samplernn": {"trained": 18_744_832},
    "sing": {"generation": 63_747_929, "encoder": 38_285_440},
    "wavegan": {"generator": 19_065_345, "discriminator": 17_427_969},
    "gansynth": {"generator": 7_311_246, "discriminator": 6_831_230},
    "flowavenet": {"total": 182_644_788, "without_weight_norm_gains": 182_469_170},
}

# (sample rate, samples produced per example by one inference call)
EXPECTED_AUDIO = {
    "samplernn": (16_000, 8),
    "sing": (16_000, 65_024),
    "wavegan": (16_000, 16_384),
    "gansynth": (16_000, 64_000),
    "flowavenet": (22_050, 15_872),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny CPU forwards: one thread (conftest)


@pytest.fixture(scope="module")
def meta_models() -> dict[str, torch.nn.Module]:
    """Every full-size model, built once on meta."""
    return {name: build(name, device="meta") for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def forward_costs(meta_models) -> dict[str, ForwardCost]:
    """One counted full-size inference call per model, on meta, batch 2."""
    return {name: forward_cost(model, batch=2) for name, model in meta_models.items()}


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: build(name, tiny=True) for name in MODEL_NAMES}


# ------------------------------------------------------------------ sizes and shapes
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_counts_are_exact(meta_models, name):
    counts = meta_models[name].parameter_counts()
    for part, expected in EXPECTED_PARAMS[name].items():
        assert counts[part] == expected, (name, part)
    for part, expected in get_spec(name).reference_params:
        assert counts[part] == expected


def test_the_provenance_notes_ship_and_state_every_count_and_schedule():
    """``waveflow/zoo/REFERENCES.md`` is what the docstrings cite: it ships in the wheel and gives, per
    model, the repository followed, the counts the tests check and the schedule the tables use."""
    import re
    from pathlib import Path

    import waveflow

    notes = Path(waveflow.__file__).parent / "zoo" / "REFERENCES.md"
    text = notes.read_text(encoding="utf-8")
    pyproject = (Path(waveflow.__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    package_data = re.search(r"\[tool\.setuptools\.package-data\]\s*waveflow = \[([^]]*)\]", pyproject)
    assert package_data and '"zoo/REFERENCES.md"' in package_data.group(1)
    for repository in (
        "soroushmehr/sampleRNN_ICLR2017",
        "facebookresearch/SING",
        "chrisdonahue/wavegan",
        "magenta/magenta",
        "ksw0306/FloWaveNet",
    ):
        assert repository in text
    for name in MODEL_NAMES:
        spec = get_spec(name)
        for count in [*EXPECTED_PARAMS[name].values(), *spec.params.values()]:
            assert f"{count:,}" in text, (name, count)
        if spec.reported_steps is not None:
            assert f"{spec.reported_steps:,}" in text, name
        assert f"| {spec.reported_hours:g} |" in text, name
    # SampleRNN: what "exact" means, and the variant chosen
    assert "20,846,080" in text and "IndependentPreds" in text and "39,243,264" in text
    assert "shared/" not in text


def test_optional_heads_and_stage_only_parts():
    with torch.device("meta"):
        from waveflow.zoo import SampleRNN

        with_head = SampleRNN(SampleRNNConfig(independent_preds=True)).parameter_counts()
    assert with_head == {"trained": 18_744_832, "total": 20_846_080}
    sing = build("sing", device="meta").parameter_counts()
    assert sing["sequence_generator"] + sing["decoder"] == 63_747_929
    assert sing["encoder"] + sing["decoder"] == 80_765_057  # the autoencoder of stage 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_full_size_inference_shapes_on_meta(meta_models, forward_costs, name):
    sr, samples = EXPECTED_AUDIO[name]
    spec = get_spec(name)
    assert meta_models[name].sample_rate == spec.sample_rate == sr
    assert spec.audio_samples_per_forward == samples
    assert spec.audio_seconds_per_forward == pytest.approx(samples / sr)
    assert forward_costs[name].output_shape == (2, samples)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tiny_forward_and_backward_on_cpu(tiny_models, name):
    model = tiny_models[name]
    inputs = make_inputs(model, 2)
    assert all(t.device.type == "cpu" for t in inputs)
    audio = model(*inputs)
    assert audio.dim() == 2 and audio.shape[0] == 2 and torch.isfinite(audio).all()
    model.zero_grad(set_to_none=True)
    if name == "samplernn":  # sampling is not differentiable: backpropagate the training loss
        loss, _, _ = model.loss(*make_batch(model, 2), *model.initial_state(2))
    elif name == "flowavenet":  # the flow's backward pass is the density direction
        log_p, logdet = model.log_likelihood(*make_batch(model, 2))
        loss = -(log_p + logdet)
    else:
        loss = audio.pow(2).mean()
    loss.backward()
    assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tiny_training_step_runs_every_stage(tiny_models, name):
    model = tiny_models[name]
    for stage in model.training_stages:
        batch = make_batch(model, stage=stage)
        before = [p.detach().clone() for p in model.parameters()]
        losses = training_step(model, batch, stage=stage)
        assert losses and all(torch.isfinite(v).all() for v in losses.values())
        assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)), stage
    if name == "wavegan":  # five critic updates per generator update
        opt = model.optimizers()
        d_steps = int(opt["discriminator"].state[next(model.discriminator.parameters())]["step"])
        g_steps = int(opt["generator"].state[next(model.generator.parameters())]["step"])
        assert d_steps == 5 * g_steps > 0


def test_samplernn_carries_state_and_generates(tiny_models):
    model = tiny_models["samplernn"]
    cfg = model.config
    training_step(model, make_batch(model), stage=None)
    assert model._state is not None and model._chunk >= 1
    audio = model.generate(2, 3 * cfg.big_frame_size)
    assert audio.shape == (2, 24) and audio.min() >= -1.0 and audio.max() < 1.0


# ------------------------------------------------------------------ component faithfulness
def test_phase_shuffle_keeps_shape_and_shifts_whole_batch():
    torch.manual_seed(3)
    x = torch.arange(40.0).view(2, 2, 10)
    assert torch.equal(PhaseShuffle(0)(x), x)
    for _ in range(5):
        y = PhaseShuffle(2)(x)
        assert y.shape == x.shape
        shifts = {int((x[b, c] == y[b, c, 5]).nonzero()[0]) - 5 for b in range(2) for c in range(2)}
        assert len(shifts) == 1 and abs(shifts.pop()) <= 2  # one shift shared by the batch


def test_gansynth_inverse_stft_inverts_a_hann_stft():
    model = GANSynth(GANSynthConfig.tiny())
    cfg = model.config
    audio = torch.randn(2, cfg.hop * 40 + cfg.n_fft)
    stft = torch.stft(audio, cfg.n_fft, cfg.hop, window=model.window, center=False, return_complex=True)
    rebuilt = model.inverse_stft(stft.transpose(1, 2))
    edge = cfg.n_fft  # fewer than four overlapping frames at the ends
    torch.testing.assert_close(rebuilt[:, edge:-edge], audio[:, edge:-edge], atol=1e-4, rtol=1e-4)


def test_flowavenet_flow_is_invertible():
    torch.manual_seed(0)
    flow = Flow(4, 16, FloWaveNetConfig.tiny())
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the output conv starts at zero: make it act
        x, c = torch.randn(2, 4, 32), torch.randn(2, 16, 32)
        y, c_out, _ = flow(x, c)
        x_back, c_back = flow.reverse(y, c_out)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(c_back, c)


# ------------------------------------------------------------------ MAC counts
# The forward MACs per second of audio derived in waveflow/zoo/REFERENCES.md (network only).
REFERENCE_MACS_PER_SECOND = {
    "samplernn": 128e9,  # 8.00 M per sample x 16,000 samples
    "sing": 4.1e9,
    "wavegan": 0.83e9,
    "gansynth": 3.5e9,  # 14.14 G per 4-s note, before mel inversion and iSTFT
    "flowavenet": 194e9,  # 8.80 M per sample x 22,050 samples
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_counted_macs_match_reference_derivations(forward_costs, name):
    cost = forward_costs[name]  # batch 2
    spec = get_spec(name)
    per_call = cost.network_macs / cost.batch
    assert per_call == pytest.approx(spec.reference_macs_per_forward, rel=0.02)
    assert per_call / cost.audio_seconds == pytest.approx(REFERENCE_MACS_PER_SECOND[name], rel=0.02)
    assert cost.flops == 2 * cost.macs
    assert cost.macs_per_audio_second == pytest.approx(cost.macs / 2 / spec.audio_seconds_per_forward)
    assert cost.macs >= cost.network_macs


def test_lstm_counts_equal_closed_form_and_pytorch_decomposition():
    """CountableLSTM on meta: forward = closed form; forward + backward = nn.LSTM's own meta count."""
    sizes = dict(input_size=5, hidden_size=8, num_layers=2)
    steps, batch = 6, 3

    def count(lstm: nn.LSTM, backward: bool) -> float:
        x = torch.randn(steps, batch, 5, device="meta", requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            out, _ = lstm(x)
            if backward:
                out.sum().backward()
        return counter.get_total_flops() / 2

    with torch.device("meta"):
        ours, reference = CountableLSTM(**sizes), nn.LSTM(**sizes)
    assert count(ours, False) == lstm_macs(5, 8, 2, steps, batch)
    assert count(ours, True) == count(reference, True)


def test_gru_meta_surrogate_counts_equal_the_stepwise_loop():
    torch.manual_seed(0)
    gru = GRU(3, 8)

    def count(device: str) -> float:
        g = gru.to(device)
        x = torch.randn(2, 5, 3, device=device)
        h0 = torch.zeros(8, device=device, requires_grad=True).expand(2, 8)
        with FlopCounterMode(display=False) as counter:
            out, h = g(x, h0)
            (out.sum() + h.sum()).backward()
        return counter.get_total_flops()

    stepwise = count("cpu")
    assert stepwise > 0 and count("meta") == stepwise


def test_training_step_cost_is_counted_on_meta():
    cost = training_step_cost("sing", stage="autoencoder", batch=1)
    # Encoder 265 x (1024 x 4096 + 2 x 4096^2 + 4096 x 128) + decoder 16.54 G - 5.59 G LSTM - 34.7 M linear.
    encoder = 265 * (1024 * 4096 + 2 * 4096**2 + 4096 * 128)
    decoder = 257 * (9 * 128 * 4096 + 2 * 4096**2 + 1024 * 4096)
    assert cost.stage == "autoencoder" and cost.batch == 1
    # forward + backward (weights and activations; no gradient for the input waveform) ~ 3 x forward
    assert 2.5 * (encoder + decoder) < cost.macs <= 3 * (encoder + decoder)


# ------------------------------------------------------------------ bad inputs
def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match="wavegan2") as err:
        build("wavegan2")
    for name in MODEL_NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="known models"):
        get_spec("melgan")
    with pytest.raises(ValueError, match="either tiny"):
        build("sing", tiny=True, width_scale=0.5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zero_batch_is_rejected(meta_models, name):
    model = meta_models[name]
    with pytest.raises(ValueError, match="batch"):
        make_inputs(model, 0)
    with pytest.raises(ValueError, match="batch"):
        make_batch(model, 0)


def test_clips_shorter_than_a_frame_or_hop_are_rejected(meta_models):
    m = meta_models
    with pytest.raises(ValueError, match="16384"):
        m["wavegan"].discriminator(torch.zeros(1, 1, 100, device="meta"))
    with pytest.raises(ValueError, match="128, 1024"):
        m["gansynth"].discriminator(torch.zeros(1, 2, 64, 1024, device="meta"))
    with pytest.raises(ValueError, match="256-sample hop"):
        m["sing"].make_batch(1, stage="autoencoder", note_samples=100)
    with pytest.raises(ValueError, match="context|frames"):
        m["sing"].decoder(torch.zeros(1, 128, 4, device="meta"))
    with pytest.raises(ValueError, match="8-sample top-tier frame"):
        m["samplernn"].make_batch(1, seq_len=4)
    with pytest.raises(ValueError, match="8-sample top-tier frame"):
        m["samplernn"].generate(1, 5)
    with pytest.raises(ValueError, match="256-sample hop"):
        m["flowavenet"].make_batch(1, n_samples=100)
    with pytest.raises(ValueError, match="256-sample hop"):
        m["flowavenet"].make_inputs(1, n_frames=0)
    with pytest.raises(ValueError, match="do not match"):
        m["flowavenet"].log_likelihood(torch.zeros(1, 1, 512, device="meta"), torch.zeros(1, 80, 3, device="meta"))


def test_reported_schedule_matches_table1():
    kwh = {"flowavenet": 81.6, "gansynth": 32.4, "samplernn": 42.0, "sing": 52.0, "wavegan": 24.0}
    for name, expected in kwh.items():
        assert get_spec(name).reported_kwh == pytest.approx(expected)
    assert get_spec("gansynth").reported_steps == 11_000_000 // 8
    assert sum(h for _, h in get_spec("sing").stage_hours) == get_spec("sing").reported_hours
    assert math.isclose(get_spec("wavegan").examples_per_training_step, 5 * 64)
