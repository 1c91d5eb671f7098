"""The vocoder table's protocol: the relative energy's interval, the checks on its inputs, one real run
of two small models, and the command's one-line errors. No test asserts a time."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from waveflow.cli import main
from waveflow.experiments.vocoder_candidates import REFERENCE_MODEL, candidate_names, get_candidate
from waveflow.experiments.vocoders import COLUMNS, Protocol, check_device, measure_vocoders, relative_energy
from waveflow.zoo.vocoders import wavegrad
from waveflow.zoo.vocoders.base import Vocoder
from waveflow.zoo.vocoders.diffwave import DiffWave, DiffWaveConfig
from waveflow.zoo.vocoders.flow_waveflow import WaveFlow
from waveflow.zoo.vocoders.waveglow import WaveGlow, WaveGlowConfig
from waveflow.zoo.vocoders.wavegrad import WaveGrad

CPU = ("cpu", "cpu0", "estimated:tdp-per-thread")
DRAM = ("dram", "dram", "estimated:dram")


def test_one_shared_estimate_cancels_in_the_ratio():
    # both models read by the same CPU estimate, factor in [0.5, 2]: the ratio is the readings' ratio
    rel, low, high = relative_energy({CPU: (30.0, 0.5, 2.0)}, {CPU: (10.0, 0.5, 2.0)})
    assert rel == pytest.approx(3.0) and low == pytest.approx(3.0) and high == pytest.approx(3.0)


def test_two_estimates_give_a_ratio_interval_narrower_than_the_numbers():
    model = {CPU: (30.0, 0.5, 2.0), DRAM: (1.0, 0.5, 1.5)}
    reference = {CPU: (10.0, 0.5, 2.0), DRAM: (5.0, 0.5, 1.5)}
    rel, low, high = relative_energy(model, reference)
    assert rel == pytest.approx(31 / 15)
    assert low < rel < high
    # the naive interval, model low over reference high and back, is far wider
    naive_low = (30 * 0.5 + 1 * 0.5) / (10 * 2 + 5 * 1.5)
    naive_high = (30 * 2 + 1 * 1.5) / (10 * 0.5 + 5 * 0.5)
    assert naive_low < low and high < naive_high
    # the bounds are attained at corners: CPU high & DRAM low maximise the model's (CPU-heavier) share
    assert high == pytest.approx((30 * 2 + 1 * 0.5) / (10 * 2 + 5 * 0.5))


def test_measured_energy_has_only_the_trials_noise_as_interval():
    gpu = ("gpu", "GPU 0", "measured:nvml-energy")
    rel, low, high = relative_energy({gpu: (8.0, 1.0, 1.0)}, {gpu: (4.0, 1.0, 1.0)})
    assert (rel, low, high) == (2.0, 2.0, 2.0)
    rel, low, high = relative_energy({gpu: (8.0, 1.0, 1.0)}, {gpu: (4.0, 1.0, 1.0)}, 0.1, 0.1, 5, 5)
    noise = 2 * math.sqrt(0.01 / 5 + 0.01 / 5)
    assert low == pytest.approx(2 * (1 - noise)) and high == pytest.approx(2 * (1 + noise))


def test_no_reference_energy_gives_no_ratio():
    assert all(math.isnan(v) for v in relative_energy({CPU: (1.0, 1, 1)}, {CPU: (0.0, 1, 1)}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trials": 4}, "trials: expected at least 5"),
        ({"sweep": (1, 0)}, "batch (sweep): expected a positive integer, got 0"),
        ({"vocos_batch": 0}, "vocos_batch: expected a positive integer"),
        ({"seconds": 0.0}, "seconds: expected a positive number of seconds"),
        ({"seconds": float("nan")}, "seconds: expected a positive number of seconds"),
        ({"warmup": -1}, "warmup: expected an integer >= 0"),
    ],
)
def test_a_bad_protocol_is_refused_naming_the_value(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Protocol(**changes)


def test_a_device_that_is_not_here_is_refused():
    with pytest.raises(ValueError, match="not a device name"):
        check_device("gpu7")
    if torch.cuda.device_count() < 8:
        with pytest.raises(ValueError, match="cuda:7: no such GPU here"):
            check_device("cuda:7")
    assert check_device("cpu").type == "cpu"


def test_an_unknown_model_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'wavenet'; expected any of WF1, .*hifigan-v1"):
        get_candidate("wavenet")
    assert {"WF1", "WF5", "samplernn", "flowavenet", REFERENCE_MODEL} <= set(candidate_names())


def test_a_clip_too_short_for_the_model_is_refused_naming_it():
    class Wide(Vocoder):
        sample_rate, hop_length, n_mels = 16_000, 256, 80

        @property
        def min_frames(self) -> int:
            return 10

    with pytest.raises(ValueError, match=r"Wide: 0.01 s is 1 mel frame\(s\), shorter than the 10 frames"):
        Wide().make_mel(1, 0.01)


@pytest.mark.parametrize(
    "model",
    [
        WaveGlow(WaveGlowConfig(n_channels=8, n_layers=2)),
        WaveFlow(),
        DiffWave(DiffWaveConfig(residual_layers=2, residual_channels=4)),
        WaveGrad(wavegrad.SMALL),
    ],
    ids=["WaveGlow", "WaveFlow", "DiffWave", "WaveGrad"],
)
def test_a_too_short_or_misshaped_mel_is_refused_naming_the_model(model: Vocoder) -> None:
    name = type(model).__name__
    with pytest.raises(ValueError, match=f"^{name}: .*shorter"):
        model(torch.randn(1, 80, 0))
    with pytest.raises(ValueError, match=f"^{name}: mel must have shape"):
        model(torch.randn(1, 64, 4))
    with pytest.raises(ValueError, match=f"^{name}: mel must have shape"):
        model(torch.randn(80, 4))


def test_the_device_rule_refuses_what_is_not_here():
    from waveflow.devices import resolve_device

    with pytest.raises(ValueError, match=r"--device 'tpu0': not a device name"):
        resolve_device("tpu0")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"--device cuda:{count}: no such GPU here"):
        resolve_device(f"cuda:{count}")
    assert resolve_device("auto").type == ("cuda" if count else "cpu")


def test_the_protocol_measures_every_column_and_adds_the_reference():
    protocol = Protocol(seconds=0.07, trials=5, warmup=0, sweep=(1, 2), sweep_calls=1, vocos_batch=2,
                        vocos_seconds=0.07)
    table, sweep = measure_vocoders(["melgan-small"], protocol)
    assert list(table.columns) == COLUMNS
    assert list(table["model"]) == [REFERENCE_MODEL, "melgan-small"]
    assert list(table["requested"]) == [False, True]
    ref = table.iloc[0]
    assert (ref["relative_energy"], ref["relative_energy_low"], ref["relative_energy_high"]) == (1.0, 1.0, 1.0)
    for _, row in table.iterrows():
        assert row["trials"] == 5 and row["gflop_per_audio_s"] > 0 and row["xrt"] > 0 and row["vocos_xrt"] > 0
        assert row["j_per_audio_s_low"] <= row["j_per_audio_s"] <= row["j_per_audio_s_high"]
        assert row["relative_energy_low"] <= row["relative_energy"] <= row["relative_energy_high"]
        assert row["optimal_batch"] in (1, 2) and "random weights" in row["note"]
        assert row["energy_method"].startswith(("estimated:", "measured:"))
    # HiFi-GAN V1 counts more FLOPs per second of audio than the small MelGAN
    assert table.iloc[0]["gflop_per_audio_s"] > table.iloc[1]["gflop_per_audio_s"]
    assert set(sweep["batch"]) == {1, 2} and sweep.groupby("model")["optimal"].sum().eq(1).all()
    assert isinstance(sweep, pd.DataFrame)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "wavenet"], "unknown model 'wavenet'"),
        (["--batch", "0"], "--batch: expected positive batch sizes, got 0"),
        (["--device", "cuda:7"], "cuda:7"),
        (["--seconds", "-1"], "seconds: expected a positive number of seconds"),
        (["--trials", "3"], "trials: expected at least 5"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(argv, message, capsys):
    if argv[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() >= 8:
        pytest.skip("this machine has a cuda:7")
    assert main(["vocoders", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_protocols_flop_count_agrees_with_the_e_gen_count_of_waveflow():
    from waveflow.experiments.vocoders import counted_call
    from waveflow.measures.flops import count
    from waveflow.model import get_config

    synth = get_candidate("WF1").load(torch.device("cpu"))
    with torch.inference_mode():
        samples, flops, _, _ = counted_call(synth, synth.inputs(1, 0.03), torch.device("cpu"))
    per_audio_s = flops / (samples / synth.sample_rate)
    assert per_audio_s == pytest.approx(count(get_config("WF1"), "synthesis").flops_per_audio_second, rel=1e-3)
