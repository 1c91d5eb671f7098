"""WaveFlow model: parameter counts, invertibility, log-det, causality, input validation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import randomise_outputs, tiny_config

from waveflow import PAPER, PAPER_CONFIGS, WaveFlow, WaveFlowConfig
from waveflow.audio import HOP_LENGTH, log_mel
from waveflow.model import parameter_count, squeeze, unsqueeze
from waveflow.model.modules import (
    CPU_KERNELS,
    CausalConv2d,
    CpuKernelChoice,
    PointwiseConv2d,
    ResidualLayer,
    cpu_kernel_choice,
    normed,
    weight_grad_by_taps,
)

# The paper's Table 2 counts, exact (the paper prints them truncated to 2 decimals).
PAPER_COUNTS = {"WF1": 5_916_372, "WF2": 5_916_372, "WF3": 12_782_036, "WF4": 22_252_756, "WF5": 86_186_196}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_parameter_counts_equal_the_paper(name):
    n = WaveFlow(PAPER_CONFIGS[name]).num_parameters()
    assert n == PAPER_COUNTS[name]
    assert parameter_count(PAPER_CONFIGS[name]) == n  # plain weights on meta, counting its twin's gains
    # ... and truncating to two decimals gives the number printed in the paper.
    assert math.floor(n / 1e4) / 100 == pytest.approx(PAPER[name].paper_params_millions)


def test_paper_configs_are_the_papers_table2():
    got = {k: (c.n_height, c.res_channels, c.n_flows, c.n_layers) for k, c in PAPER_CONFIGS.items()}
    assert got == {
        "WF1": (8, 64, 8, 8),
        "WF2": (16, 64, 8, 8),
        "WF3": (16, 96, 8, 8),
        "WF4": (16, 128, 8, 8),
        "WF5": (16, 256, 8, 8),
    }


@pytest.mark.parametrize("kernel, dilation_h, dilation_w", [(3, 1, 4), (3, 2, 1), (3, 4, 8), (5, 2, 3)])
@pytest.mark.parametrize("by_forward, by_taps", [(True, True), (True, False), (False, True), (False, False)])
def test_dilated_conv_gradients_on_cpu_equal_the_plain_convolution(kernel, dilation_h, dilation_w, by_forward, by_taps):
    """The CPU training path computes the input gradient as a forward convolution with the flipped
    kernel and the weight gradient as GEMMs over width-shifted copies (each choice can be switched
    back to oneDNN's kernel); output and all three gradients must equal autograd through the plain
    padded conv, whichever kernels are chosen."""
    torch.manual_seed(0)
    conv = CausalConv2d(3, 5, kernel, dilation_h, dilation_w).double()
    x = torch.randn(2, 3, 7, 20, dtype=torch.float64, requires_grad=True)
    with cpu_kernel_choice(input_grad_by_forward=by_forward, weight_grad_by_taps=by_taps):
        fast = conv(x)
    grad = torch.randn_like(fast)
    fast.backward(grad)
    got = [x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    x.grad = conv.weight.grad = conv.bias.grad = None
    pad = torch.nn.functional.pad(x, (conv.pad_w, conv.pad_w, conv.pad_h, 0))
    plain = torch.nn.functional.conv2d(pad, conv.weight, conv.bias, dilation=(dilation_h, dilation_w))
    plain.backward(grad)
    torch.testing.assert_close(fast, plain)
    for a, b in zip(got, [x.grad, conv.weight.grad, conv.bias.grad], strict=True):
        torch.testing.assert_close(a, b)
    with cpu_kernel_choice(input_grad_by_forward=by_forward, weight_grad_by_taps=by_taps):
        assert torch.autograd.gradcheck(conv, (x[:1, :, :4, :9].detach().requires_grad_(),))


def test_weight_grad_by_taps_runs_one_batched_gemm_per_kernel_row():
    """The weight gradient's arithmetic is all GEMMs: ``k_h`` batched products with every input
    channel and width tap side by side, not a convolution kernel."""
    torch.manual_seed(0)
    grad, padded = torch.randn(2, 6, 5, 11), torch.randn(2, 4, 5 + 2 * 3, 11 + 2 * 2)
    with torch.profiler.profile() as prof:
        weight_grad_by_taps(grad, padded, (3, 3), (3, 2))
    calls = {e.key: e.count for e in prof.key_averages()}
    assert calls["aten::bmm"] == 3
    assert not any("convolution" in k for k in calls)


def test_causal_conv_needs_an_odd_kernel():
    with pytest.raises(ValueError, match="kernel_size must be odd, got 2"):
        CausalConv2d(3, 5, 2, 1, 1)


def test_cpu_kernel_choice_restores_the_defaults_and_names_unknown_choices():
    with cpu_kernel_choice(weight_grad_by_taps=False) as chosen:
        assert not chosen.weight_grad_by_taps and chosen.input_grad_by_forward
    assert CPU_KERNELS == CpuKernelChoice()
    with pytest.raises(ValueError, match="no kernel choice 'fast'.*weight_grad_by_taps"):
        with cpu_kernel_choice(fast=True):
            pass
    assert CPU_KERNELS == CpuKernelChoice()


@pytest.mark.parametrize("weight_norm", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_pointwise_conv_as_batched_matmul_equals_the_convolution(weight_norm, batch):
    """The CPU path of the 1x1 convolutions is one ``baddbmm``; output and all three gradients must
    equal autograd through ``conv2d``, also for an input that is a non-contiguous view."""
    torch.manual_seed(0)
    conv = normed(PointwiseConv2d(4, 6).double(), weight_norm)
    full = torch.randn(batch, 8, 5, 7, dtype=torch.float64)
    x = full[:, ::2].detach().requires_grad_()  # every other channel: not contiguous
    grad = torch.randn(batch, 6, 5, 7, dtype=torch.float64)
    params = list(conv.parameters())
    fast = conv(x)
    fast.backward(grad)
    got = [t.grad.clone() for t in [x, *params]]
    for t in [x, *params]:
        t.grad = None
    plain = torch.nn.functional.conv2d(x, conv.weight, conv.bias)
    plain.backward(grad)
    torch.testing.assert_close(fast, plain)
    for a, t in zip(got, [x, *params], strict=True):
        torch.testing.assert_close(a, t.grad)
    assert torch.autograd.gradcheck(conv, (x[:1, :, :2, :3].detach().requires_grad_(),))


def test_residual_layer_accumulating_the_conditioning_equals_the_sum_of_both_convolutions():
    """On the CPU the conditioning product accumulates into the dilated conv's output, whose bias is
    the sum of both: output and gradients (both biases included) equal ``dilated(x) + cond(c)``."""
    torch.manual_seed(0)
    layer = ResidualLayer(4, 5, 3, 2, 2, last=False).double()
    x = torch.randn(2, 4, 6, 9, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 5, 6, 9, dtype=torch.float64, requires_grad=True)
    inputs = [x, c, *layer.dilated.parameters(), *layer.cond.parameters()]
    fused = layer.cond(c, layer.dilated(x, layer.dilated.bias + layer.cond.bias))
    grad = torch.randn_like(fused)
    got = torch.autograd.grad(fused, inputs, grad)
    plain = layer.dilated(x) + layer.cond(c)
    torch.testing.assert_close(fused, plain)
    for a, b in zip(got, torch.autograd.grad(plain, inputs, grad), strict=True):
        torch.testing.assert_close(a, b)
    res, skip = layer(x, c)
    filt, gate = plain.chunk(2, dim=1)
    out = layer.res_skip(torch.tanh(filt) * torch.sigmoid(gate))
    torch.testing.assert_close(torch.cat([res - x, skip], dim=1), out)


def test_squeeze_is_column_major_and_invertible():
    x = torch.arange(24.0).reshape(1, 1, 24)
    s = squeeze(x, 4)
    assert s.shape == (1, 1, 4, 6)
    assert s[0, 0, :, 0].tolist() == [0, 1, 2, 3]  # a column holds h consecutive samples
    assert s[0, 0, 1, 2].item() == 2 * 4 + 1
    assert torch.equal(unsqueeze(s), x)


def _inputs(batch: int, samples: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    audio = 0.3 * torch.randn(batch, samples, generator=g)
    return audio, log_mel(audio)


@pytest.mark.parametrize("h", [8, 16, 32])
@pytest.mark.parametrize("permutation", ["reverse", "bipartite"])
@pytest.mark.parametrize("samples", [2 * HOP_LENGTH + 96, 2 * HOP_LENGTH + 192])  # tail < and > half a hop
def test_inverse_of_forward_is_identity(h, permutation, samples):
    torch.manual_seed(h)
    model = randomise_outputs(WaveFlow(tiny_config(h=h, r=8, permutation=permutation))).eval()
    audio, mel = _inputs(2, samples)
    with torch.no_grad():
        z, log_det = model(audio, mel)
    assert z.shape == audio.shape and log_det.shape == (2,)
    assert (z - audio).abs().max() > 1e-2, "the flows must really transform the input"
    back = model.infer(mel, z=z)
    assert (back - audio).abs().max().item() <= 1e-4


def test_resynthesis_length_matches_audio_for_hop_multiples(tiny_model):
    audio, mel = _inputs(1, 3 * HOP_LENGTH)
    assert mel.shape[-1] == 4
    out = tiny_model.infer(mel, sigma=0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == audio.shape
    assert torch.isfinite(out).all()


def test_log_det_equals_log_abs_det_of_jacobian():
    torch.manual_seed(1)
    cfg = tiny_config(h=8, r=4, n_flows=4, n_layers=2, height_dilations=(1, 1), width_dilations=(1, 2))
    model = randomise_outputs(WaveFlow(cfg).double(), std=0.3)
    samples = 24  # h x W = 8 x 3
    audio = 0.3 * torch.randn(1, samples, dtype=torch.float64)
    mel = torch.randn(1, 80, samples // HOP_LENGTH + 1, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda a: model(a.unsqueeze(0), mel)[0][0], audio[0])
    _, expected = torch.linalg.slogdet(jac)
    _, log_det = model(audio, mel)
    assert log_det.item() == pytest.approx(expected.item(), abs=1e-8)


def test_log_likelihood_matches_its_definition(tiny_model):
    audio, mel = _inputs(2, 1024)
    sigma = 0.7
    z, log_det = tiny_model(audio, mel)
    n = audio.numel()
    normal = torch.distributions.Normal(0.0, sigma)
    expected = (normal.log_prob(z).sum() + log_det.sum()) / n
    assert tiny_model.log_likelihood(audio, mel, sigma=sigma).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("h", [8, 32])
def test_affine_parameters_of_row_i_ignore_rows_at_or_after_i(h):
    """Autoregression along height: perturbing row k changes only the parameters of rows > k."""
    torch.manual_seed(2)
    model = randomise_outputs(WaveFlow(tiny_config(h=h, r=8))).eval()
    flow = model.flows[0]
    width = 5
    x = torch.randn(1, 1, h, width)
    c = torch.randn(1, 80, h, width)
    with torch.no_grad():
        base_s, base_t = flow(x[:, :, :-1], c[:, :, 1:])  # output row j -> parameters of x row j+1
        for k in range(h - 1):
            x2 = x.clone()
            x2[:, :, k] += 1.0
            s, t = flow(x2[:, :, :-1], c[:, :, 1:])
            changed = ((s - base_s).abs() + (t - base_t).abs()).amax(dim=(0, 1, 3)) > 1e-7
            rows_changed = (changed.nonzero().flatten() + 1).tolist()  # x rows whose params moved
            assert all(r > k for r in rows_changed), f"row {k} influenced rows {rows_changed}"
            assert rows_changed, f"perturbing row {k} influenced nothing"
    # The first affine output (row 1) depends on row 0 only, so row 0 must matter.


def test_conditioning_aligns_frame_j_with_sample_hop_times_j():
    """An impulse in mel frame j peaks where the centred STFT put frame j: sample hop*j."""
    model = WaveFlow(tiny_config())
    with torch.no_grad():
        for conv in model.upsampler.convs:
            conv.parametrizations.weight.original1.fill_(1.0)  # v (direction), all positive
            conv.parametrizations.weight.original0.fill_(1.0)  # g
            conv.bias.zero_()
    frames, j = 9, 4
    mel = torch.zeros(1, 80, frames)
    mel[0, :, j] = 1.0
    samples = HOP_LENGTH * (frames - 1)
    cond = model.condition(mel, samples)[0, 40]
    positions = torch.arange(samples, dtype=torch.float64)
    centroid = (cond.double() * positions).sum() / cond.double().sum()
    assert cond.shape == (samples,)
    assert abs(centroid.item() - HOP_LENGTH * j) <= 1.0


def test_forward_and_infer_work_on_log_mel_of_any_hop_multiple(tiny_model):
    for samples in (HOP_LENGTH * 3, HOP_LENGTH * 5):
        audio, mel = _inputs(1, samples)
        z, _ = tiny_model(audio[0], mel[0])  # unbatched
        assert z.shape == (samples,)
        assert tiny_model.infer(mel[0], z=z).shape == (samples,)


# ---------------------------------------------------------------------------------------------
# bad input: ValueError naming the value and the expectation
def test_unsupported_height_is_rejected():
    with pytest.raises(ValueError, match=r"h=12 is not supported.*expected one of \[8, 16, 32, 64, 128\]"):
        WaveFlowConfig(n_height=12)


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("permutation", "shuffle", "permutation"),
        ("upsample_scales", (16, 8), r"128 != 256"),
        ("height_dilations", (1, 2), "8 positive dilations"),
        ("res_channels", 0, "positive integer"),
        ("sigma", -1.0, "sigma"),
    ],
)
def test_bad_config_values_are_rejected(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        WaveFlowConfig(**{field: value})


def test_audio_length_not_multiple_of_h(tiny_model):
    audio = torch.zeros(1, 1020)
    mel = torch.zeros(1, 80, 1020 // HOP_LENGTH + 1)
    with pytest.raises(ValueError, match=r"length 1020 .*multiple of the squeezed height h=8"):
        tiny_model(audio, mel)


def test_mel_frames_not_matching_audio(tiny_model):
    audio = torch.zeros(1, 1024)
    with pytest.raises(ValueError, match=r"mel has 4 frames .*1024 samples; expected 5 frames"):
        tiny_model(audio, torch.zeros(1, 80, 4))


def test_wrong_mel_bins(tiny_model):
    with pytest.raises(ValueError, match=r"mel has 64 mel bins; expected n_mels=80"):
        tiny_model(torch.zeros(1, 1024), torch.zeros(1, 64, 5))
    with pytest.raises(ValueError, match=r"64 mel bins"):
        tiny_model.infer(torch.zeros(64, 5))


@pytest.mark.parametrize("where", ["audio", "mel"])
def test_non_finite_inputs(tiny_model, where):
    audio, mel = torch.zeros(1, 1024), torch.zeros(1, 80, 5)
    if where == "audio":
        audio[0, 3] = float("nan")
    else:
        mel[0, 2, 1] = float("inf")
    with pytest.raises(ValueError, match=rf"{where} contains NaN or infinite"):
        tiny_model(audio, mel)


def test_infer_needs_two_frames(tiny_model):
    with pytest.raises(ValueError, match="at least 2 frames"):
        tiny_model.infer(torch.zeros(80, 1))
