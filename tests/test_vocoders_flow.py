"""The flow vocoder replicas: WaveGlow (follow-up sizes and NVIDIA's network) and the follow-up's WaveFlow.

Sizes equal the official modules' ``parameters()`` exactly; synthesis maps F mel frames to
F * hop samples; and each inverse is checked against a density pass written here from the
official ``forward`` methods: running the replica's synthesis and then the density pass on its
output gives back the latent the synthesis drew.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from waveflow.zoo.vocoders import flow_waveflow, waveglow
from waveflow.zoo.vocoders.base import VocoderSpec
from waveflow.zoo.vocoders.flow_waveflow import WaveFlow, WaveFlowConfig
from waveflow.zoo.vocoders.waveglow import WaveGlow, WaveGlowConfig

SPECS: tuple[VocoderSpec, ...] = waveglow.VARIANTS + flow_waveflow.VARIANTS
IDS = [spec.name for spec in SPECS]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny CPU forwards: one thread (conftest)


def _count(spec: VocoderSpec) -> int:
    with torch.device("meta"):
        model = spec.build()
    return sum(p.numel() for p in model.parameters())


def test_the_table_rows() -> None:
    assert IDS == [
        "waveglow-small",
        "waveglow-medium",
        "waveglow-large",
        "waveglow",
        "waveflow-small",
        "waveflow-medium",
        "waveflow-large",
    ]
    for spec in SPECS:
        assert spec.family == ("WaveGlow" if spec.name.startswith("waveglow") else "WaveFlow")
        assert spec.group == ("reference" if spec.name == "waveglow" else "follow-up")
        assert "@" in spec.code and spec.paper and spec.notes


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_is_the_official_modules(spec: VocoderSpec) -> None:
    assert _count(spec) == spec.official_params
    if spec.paper_params is not None:
        assert abs(spec.paper_params - spec.official_params / 1e6) <= 0.01 * spec.official_params / 1e6


def test_reference_waveglow_is_the_hifigan_papers_87_73_m_without_weight_norm() -> None:
    reference = {spec.name: spec for spec in SPECS}["waveglow"]
    large = {spec.name: spec for spec in SPECS}["waveglow-large"]
    gains = 12 * (256 + 2 * 256 * 8 + 8 * 2 * 256 + 7 * 2 * 256 + 256)  # start, cond, in-layers, res/skip (last: C)
    assert reference.official_params + gains == large.official_params
    assert round(reference.official_params / 1e6, 2) == reference.paper_params


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_synthesis_gives_frames_times_hop_samples(spec: VocoderSpec) -> None:
    torch.manual_seed(0)
    model = spec.build().eval()
    frames = 2
    with torch.no_grad():
        audio = model(torch.randn(1, model.n_mels, frames))
    assert audio.shape == (1, frames * model.hop_length)
    assert torch.isfinite(audio).all()
    assert (model.sample_rate, model.hop_length, model.n_mels) == (
        22_050 if spec.name == "waveglow" else 16_000,
        256,
        80,
    )


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_flop_counter_sees_one_synthesis_on_meta(spec: VocoderSpec) -> None:
    with torch.device("meta"):
        model = spec.build().eval()
    mel = model.make_mel(batch=1, seconds=0.5, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(mel)
    assert out.shape == (1, mel.shape[-1] * model.hop_length) and out.device.type == "meta"
    assert counter.get_total_flops() > 0


def _flops(fn, *args: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def test_waveglow_flops_are_every_flow_once_over_the_grouped_samples() -> None:
    with torch.device("meta"):
        model = {spec.name: spec for spec in SPECS}["waveglow-small"].build()
    frames, c = 10, 64
    mel = torch.empty(1, 80, frames, device="meta")
    width = frames * 256 // 8
    macs = 0
    for n in (8, 8, 8, 8, 6, 6, 6, 6, 4, 4, 4, 4):
        wn = n // 2 * c + 640 * 2 * c * 8 + 8 * c * 2 * c * 3 + (7 * 2 * c + c) * c + c * n  # start .. end
        macs += (wn + n * n) * width  # + the inverse 1x1 conv
    assert _flops(model, mel) - _flops(model.condition, mel) == 2 * macs


@pytest.mark.parametrize("name", ["waveflow-small", "waveflow-large"])
def test_waveflow_flops_are_one_wavenet_pass_per_row_per_flow(name: str) -> None:
    with torch.device("meta"):
        model = {spec.name: spec for spec in SPECS}[name].build()
    cfg = model.config
    frames, r, h = 10, cfg.res_channels, cfg.n_height
    mel = torch.empty(1, 80, frames, device="meta")
    width = frames * 256 // h
    conditioning = 8 * 80 * 2 * r * h * width  # the 8 layers' projections, once per flow over every row
    row = (r + 8 * (r * 2 * r * 9 + r * 2 * r) + r * 2) * width  # front, 8 x (3x3 conv, res/skip), (log s, t)
    macs = 8 * (conditioning + (h - 1) * row)
    assert _flops(model, mel) - _flops(model.condition, mel) == 2 * macs


# ------------------------------------------------------------------------------------------------
# inverse == the official forward's inverse
def _randomise(module: torch.nn.Module, std: float = 0.1) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)


def _waveglow_density(model: WaveGlow, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """``glow.WaveGlow.forward`` (density direction) with the replica's modules."""
    cfg = model.config
    cond = model.condition(mel)
    x = audio.unfold(1, cfg.n_group, cfg.n_group).permute(0, 2, 1)
    early = []
    for k in range(cfg.n_flows):
        if k % cfg.n_early_every == 0 and k > 0:
            early.append(x[:, : cfg.n_early_size])
            x = x[:, cfg.n_early_size :]
        x = F.conv1d(x, model.convinv[k].conv.weight)
        n_half = x.shape[1] // 2
        out = model.WN[k](x[:, :n_half], cond)
        x = torch.cat([x[:, :n_half], torch.exp(out[:, n_half:]) * x[:, n_half:] + out[:, :n_half]], 1)
    return torch.cat([*early, x], 1)


def test_waveglow_synthesis_inverts_the_official_density_pass() -> None:
    torch.manual_seed(0)
    cfg = WaveGlowConfig(n_mels=6, n_channels=8, n_layers=3, sigma=0.7)
    model = WaveGlow(cfg).double().eval()
    mel = torch.randn(2, 6, 3, dtype=torch.float64)
    with torch.no_grad():
        model(mel)  # caches the inverse 1x1 matrices; changing the weights below must renew them
        for wn in model.WN:
            _randomise(wn.end)
        for conv in model.convinv:
            q = torch.linalg.qr(torch.randn(conv.conv.in_channels, conv.conv.in_channels, dtype=torch.float64))[0]
            conv.conv.weight.copy_(q.unsqueeze(-1))
        torch.manual_seed(1)
        audio = model(mel)
        torch.manual_seed(1)
        width = 3 * 256 // 8
        z_main = 0.7 * torch.randn(2, 4, width, dtype=torch.float64)
        z_8 = 0.7 * torch.randn(2, 2, width, dtype=torch.float64)  # drawn after flow 8 of the reverse loop
        z_4 = 0.7 * torch.randn(2, 2, width, dtype=torch.float64)
        z = _waveglow_density(model, audio, mel)
    assert audio.shape == (2, 3 * 256)
    torch.testing.assert_close(z, torch.cat([z_4, z_8, z_main], 1))


def _waveflow_density(model: WaveFlow, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """``flow.WaveFlowModel.forward`` (density direction, causal height padding) with the replica's modules."""
    cfg = model.config
    cond = model.condition(mel)
    b = audio.shape[0]
    x = audio.reshape(b, -1, cfg.n_height).transpose(1, 2).unsqueeze(1)
    for k, coupling in enumerate(model.flows):
        x_in, c_in = x[:, :, :-1], cond[:, :, 1:]
        h = coupling.net.front_conv(x_in)
        skip = 0
        for block in coupling.net.res_blocks:
            r = block.channels
            act = block.filter_gate_conv(F.pad(h, (0, 0, block.cache_rows, 0))) + block.filter_gate_conv_c(c_in)
            res_skip = block.res_skip_conv(torch.tanh(act[:, :r]) * torch.sigmoid(act[:, r:]))
            h, skip = h + res_skip[:, :r], skip + res_skip[:, r:]
        log_s_t = coupling.proj_log_s_t(skip)
        x = torch.cat([x[:, :, :1], x[:, :, 1:] * torch.exp(log_s_t[:, :1]) + log_s_t[:, 1:]], 2)
        x, cond = model.permute(x, k), model.permute(cond, k)
    return x


@pytest.mark.parametrize(
    "cfg",
    [
        WaveFlowConfig(n_mels=6, res_channels=8, n_height=8, n_flows=4, n_layers=3, sigma=0.8),
        WaveFlowConfig(n_mels=6, res_channels=8, n_height=16, n_flows=4, n_layers=3, layers_per_dilation_h_cycle=2,
                       bipartize=True),
    ],
    ids=["follow-up", "bipartite-dilated"],
)
def test_waveflow_row_wise_synthesis_inverts_the_official_density_pass(cfg: WaveFlowConfig) -> None:
    torch.manual_seed(0)
    model = WaveFlow(cfg).double().eval()
    for coupling in model.flows:
        _randomise(coupling.proj_log_s_t)
    mel = torch.randn(2, 6, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.manual_seed(1)
        audio = model(mel)
        torch.manual_seed(1)
        z = cfg.sigma * torch.randn(2, 1, cfg.n_height, 2 * 256 // cfg.n_height, dtype=torch.float64)
        z_back = _waveflow_density(model, audio, mel)
    assert audio.shape == (2, 2 * 256)
    torch.testing.assert_close(z_back, z)
