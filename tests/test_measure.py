"""E_train / E_gen measurement: what is metered, how it is labelled and extrapolated."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from waveflow import WaveFlow, WaveFlowConfig
from waveflow.audio import SAMPLE_RATE
from waveflow.energy import read_records
from waveflow.experiments import (
    PAPER_BATCH,
    PAPER_SEGMENT,
    SWEEP_NOISE,
    batch_sweep,
    compare_precisions,
    energy_mels,
    longest_clips,
    measure_inference,
    measure_training,
    measured_summary,
    rescale_schedule,
)
from waveflow.measures.flops import count
from waveflow.paths import LJSPEECH_MINI
from waveflow.train import read_metrics

TINY = WaveFlowConfig(n_height=8, res_channels=8, n_flows=2, n_layers=2, permutation="reverse")


def test_training_meter_covers_exactly_the_measured_steps(tmp_path):
    row = measure_training(
        "tiny",
        TINY,
        tmp_path / "run",
        steps=2,
        batch_size=1,
        segment=1024,
        data=LJSPEECH_MINI,
        epochs=2,
        warmup_steps=1,
        device="cpu",
        ct_update_interval=0.05,
        schedule_steps=1000,
        log=tmp_path / "energy.csv",
    )
    steps = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3]  # one warm-up step + two measured steps, one run
    measured = sum(r["seconds"] for r in steps[1:])
    # The window holds the two steps (plus logging), not data validation or the final checkpoint.
    assert measured * 0.9 <= row["wall_s"] <= measured + 0.5
    assert row["energy_method"].startswith(("measured:", "estimated:"))
    assert row["e_train_label"].startswith("extrapolated from 2 steps")
    expected = row["j_per_audio_sample"] * 1000 * PAPER_BATCH * PAPER_SEGMENT / 3.6e6
    assert row["e_train_kwh_extrapolated"] == pytest.approx(expected)
    assert row["j_per_example"] == pytest.approx(row["energy_j_pue"] / 2)
    # the interval is carried through the extrapolation unchanged in relative terms
    assert row["e_train_kwh_low"] <= row["e_train_kwh_extrapolated"] <= row["e_train_kwh_high"]
    for side in ("low", "high"):
        scale = row[f"energy_j_pue_{side}"] / row["energy_j_pue"]
        assert row[f"e_train_kwh_{side}"] == pytest.approx(row["e_train_kwh_extrapolated"] * scale)
        assert row[f"j_per_example_{side}"] == pytest.approx(row["j_per_example"] * scale)
    # energy per training GFLOP: FLOPs of forward + backward, counted, for the audio the steps processed
    gflops = count(TINY, "training").flops_per_audio_second * 2 * 1024 / SAMPLE_RATE / 1e9
    assert row["train_gflops"] == pytest.approx(gflops)
    assert row["j_per_train_gflop"] == pytest.approx(row["energy_j_pue"] / gflops)
    assert row["energy_scope"] in {"device", "process-tree", "device,process-tree"}
    assert row["params"] == WaveFlow(TINY).num_parameters()
    assert "Carbontracker" in row["ct_method"]
    logged = read_records(tmp_path / "energy.csv")
    assert logged.label.tolist() == ["train tiny"] and logged.energy_j_pue.iloc[0] == pytest.approx(row["energy_j_pue"])


def test_unknown_schedule_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="r=8 has no paper schedule"):
        measure_training(
            "tiny",
            TINY,
            tmp_path / "run",
            steps=1,
            batch_size=1,
            segment=1024,
            data=LJSPEECH_MINI,
            epochs=1,
            device="cpu",
        )
    assert not (tmp_path / "run").exists()


def test_inference_is_labelled_extrapolated_unless_100_s(tiny_model, tmp_path):
    mels = energy_mels([0.1 * torch.randn(3000)], n_clips=2, seconds=0.1)
    assert len(mels) == 2 and mels[0].shape == (80, 10)  # repeated end to end to reach the length
    row = measure_inference("tiny", tiny_model, mels, batch_size=2, device="cpu", log=tmp_path / "e.csv")
    assert read_records(tmp_path / "e.csv").label.tolist() == ["synthesize tiny"]
    assert row["e_gen_label"].startswith("extrapolated from 0.")
    assert row["e_gen_wh"] == pytest.approx(row["energy_j_pue"] / row["audio_s"] * 100 / 3600)
    assert row["j_per_gflop"] > 0 and row["gflops_per_audio_s"] > 0
    assert row["e_gen_wh_low"] <= row["e_gen_wh"] <= row["e_gen_wh_high"]
    scale = row["energy_j_pue_high"] / row["energy_j_pue"]
    assert row["e_gen_wh_high"] == pytest.approx(row["e_gen_wh"] * scale)
    assert row["j_per_gflop_high"] == pytest.approx(row["j_per_gflop"] * scale)


def test_precision_comparison_reports_speed_energy_and_error_per_precision(tiny_model, tmp_path, monkeypatch):
    import waveflow.devices as devices

    monkeypatch.setattr(devices, "bf16_support", lambda device: (True, "test"))  # emulated here: measures only
    mels = energy_mels([0.1 * torch.randn(3000)], n_clips=1, seconds=0.05)
    clip = 0.1 * torch.randn(1000, generator=torch.Generator().manual_seed(4))
    table = compare_precisions("tiny", tiny_model, mels, clip, device="cpu", log=tmp_path / "e.csv")
    assert table.precision.tolist() == ["fp32", "bf16"]
    assert read_records(tmp_path / "e.csv").label.tolist() == ["synthesize tiny", "synthesize tiny bf16"]
    fp32, bf16 = table.iloc[0], table.iloc[1]
    assert fp32.speedup_vs_fp32 == 1.0 and fp32.log_mel_l1_vs_fp32 == 0.0
    assert fp32.roundtrip_max_abs < 1e-4  # float32 inverts the density pass exactly, up to rounding
    assert bf16.roundtrip_max_abs > fp32.roundtrip_max_abs and bf16.log_mel_l1_vs_fp32 > 0  # reported, not hidden
    assert bf16.speedup_vs_fp32 == pytest.approx(fp32.wall_s / bf16.wall_s)
    with pytest.raises(ValueError, match="expected at least one hop"):
        compare_precisions("tiny", tiny_model, mels, clip[:100], device="cpu", log=False)


def test_batch_sweep_marks_sizes_within_the_noise_margin(tiny_model, tmp_path):
    mel = energy_mels([0.1 * torch.randn(3000)], n_clips=1, seconds=0.05)[0]
    table = batch_sweep("tiny", tiny_model, mel, 2, [1, 2], device="cpu", log=False)
    best = table.j_per_audio_s.min()
    assert table.optimal.sum() >= 1 and table.loc[table.optimal, "within_noise"].all()
    assert (table.within_noise == (table.j_per_audio_s <= best * (1 + SWEEP_NOISE))).all()


def test_rescale_schedule_and_summary():
    t2 = pd.DataFrame({"model": ["WF3", "WF4"], "e_train_kwh": [725.4, 644.8]})
    out = rescale_schedule(t2, "WF3", 3_000_000, 2_000_000)
    assert out.e_train_kwh.tolist() == pytest.approx([483.6, 644.8]) and t2.e_train_kwh[0] == 725.4
    with pytest.raises(ValueError, match="'WF9' not in column"):
        rescale_schedule(t2, "WF9", 1, 2)
    training = pd.DataFrame(
        {
            "config": ["A"],
            "params": [1],
            "e_train_kwh_extrapolated": [2.0],
            "e_train_kwh_low": [0.5],
            "e_train_kwh_high": [9.0],
            "e_train_label": ["x"],
        }
    )
    inference = pd.DataFrame({"config": ["A"], "e_gen_wh": [3.0], "e_gen_label": ["y"]})  # an older table
    quality = pd.DataFrame({"config": ["A"], "nll_nats": [0.1], "nll_bits": [0.14], "pred_mos": [3.0]})
    s = measured_summary(training, inference, quality)
    assert s.iloc[0].to_dict() == {
        "config": "A",
        "params": 1,
        "nll_nats": 0.1,
        "nll_bits": 0.14,
        "pred_mos": 3.0,
        "e_train_kwh": 2.0,
        "e_train_kwh_low": 0.5,
        "e_train_kwh_high": 9.0,
        "e_train_kwh_kind": "x",
        "e_gen_wh": 3.0,
        "e_gen_wh_low": 3.0,  # no bounds in the table: the value itself
        "e_gen_wh_high": 3.0,
        "e_gen_wh_kind": "y",
    }


def test_longest_clips_are_picked_from_headers():
    clips = longest_clips(LJSPEECH_MINI, 2)
    # LJ001-0014 (219,293 samples) and LJ001-0003 (213,149) are the two longest bundled clips.
    assert [c.shape[0] for c in clips] == [219_293, 213_149]
