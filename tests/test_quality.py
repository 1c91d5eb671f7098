"""waveflow.measures.quality: NLL, mel distances, predicted MOS, per-clip evaluation and the evaluate CLI."""

from __future__ import annotations

import csv
import math

import librosa
import numpy as np
import pytest
import torch
from conftest import randomise_outputs, tiny_config

from waveflow import WaveFlow
from waveflow.audio import HOP_LENGTH, N_MELS, load_wav, log_mel, save_wav
from waveflow.data import assign_splits
from waveflow.measures.evaluation import evaluate_model, summarize
from waveflow.measures.quality import (
    MCD_SCALE,
    PRED_MOS_COLUMN,
    PRED_MOS_LABEL,
    heldout_nll,
    log_mel_l1,
    mcd_from_log_mels,
    mel_cepstral_distortion,
    mel_recipe,
    predicted_mos,
)
from waveflow.paths import LJSPEECH_MINI

CLIP = LJSPEECH_MINI / "wavs" / "LJ001-0002.wav"


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return load_wav(CLIP)[0]


def with_noise(audio: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(audio.shape, generator=g)
    noise *= torch.sqrt(audio.pow(2).mean() / noise.pow(2).mean() / 10 ** (snr_db / 10))
    return audio + noise


# ------------------------------------------------------------------------------------------
# distances
def test_identical_audio_has_zero_distance(clip):
    assert log_mel_l1(clip, clip) == 0.0
    assert mel_cepstral_distortion(clip, clip) == 0.0


def test_more_noise_gives_larger_distances(clip):
    l1 = [log_mel_l1(clip, with_noise(clip, snr)) for snr in (30, 20, 10)]
    mcd = [mel_cepstral_distortion(clip, with_noise(clip, snr)) for snr in (30, 20, 10)]
    assert 0 < l1[0] < l1[1] < l1[2]
    assert 0 < mcd[0] < mcd[1] < mcd[2]


def test_mcd_follows_its_formula_and_ignores_overall_level():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(N_MELS, 20))
    k = np.arange(N_MELS)[:, None]
    bump = 0.3 * np.cos(np.pi * 3 * (k + 0.5) / N_MELS)  # only c3 changes, by 0.15
    assert mcd_from_log_mels(ref, ref + bump) == pytest.approx(MCD_SCALE * math.sqrt(2 * 0.15**2))
    assert mcd_from_log_mels(ref, ref + 2.0) == pytest.approx(0.0, abs=1e-9)  # c0 is excluded
    # beyond order 24 the cepstrum is not compared
    assert mcd_from_log_mels(ref, ref + 0.3 * np.cos(np.pi * 30 * (k + 0.5) / N_MELS)) == pytest.approx(0.0, abs=1e-9)


def test_distances_align_to_the_shorter_signal(clip):
    assert log_mel_l1(clip, clip[: -3 * HOP_LENGTH]) == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError, match="estimate"):
        log_mel_l1(clip, torch.full_like(clip, float("nan")))


# ------------------------------------------------------------------------------------------
# predicted MOS
def test_noise_lowers_the_predicted_mos_of_a_real_clip(clip):
    clean, noisy = predicted_mos(clip), predicted_mos(with_noise(clip, 10))
    assert 3.0 < clean < 5.0
    assert noisy < clean - 0.5
    assert PRED_MOS_COLUMN == "pred_mos_dnsmos_p808" and "not a listening test" in PRED_MOS_LABEL


def test_predicted_mos_equals_speechmos_p808():
    from speechmos import dnsmos

    audio = load_wav(LJSPEECH_MINI / "wavs" / "LJ001-0001.wav")[0][: 198 * HOP_LENGTH]  # 1 window
    x16 = librosa.resample(audio.numpy(), orig_sr=22050, target_sr=16000)
    assert predicted_mos(audio) == pytest.approx(float(dnsmos.run(x16, 16000)["p808_mos"]), abs=1e-5)


# ------------------------------------------------------------------------------------------
# likelihood
@pytest.fixture(scope="module")
def model() -> WaveFlow:
    torch.manual_seed(0)
    return randomise_outputs(WaveFlow(tiny_config(h=8, r=8)), std=0.05).eval()


def test_heldout_nll_of_one_clip_is_minus_the_log_likelihood(model, clip):
    audio = clip[: 16 * HOP_LENGTH]
    result = heldout_nll(model, [audio])
    with torch.no_grad():
        expected = -float(model.log_likelihood(audio, log_mel(audio)))
    assert result["nats_per_sample"] == pytest.approx(expected, rel=1e-6)
    assert result["bits_per_sample"] == pytest.approx(result["nats_per_sample"] / math.log(2))
    assert result["n_samples"] == 16 * HOP_LENGTH and result["n_clips"] == 1


def test_heldout_nll_weights_clips_by_their_length(model, clip):
    short, long = clip[: 8 * HOP_LENGTH + 17], clip[4000 : 4000 + 24 * HOP_LENGTH]  # short is cropped to 8 hops
    a, b = heldout_nll(model, [short]), heldout_nll(model, [long])
    both = heldout_nll(model, [("s", short), ("l", long)])
    assert a["n_samples"] == 8 * HOP_LENGTH
    assert both["nats_per_sample"] == pytest.approx(
        (a["nats_per_sample"] * 8 + b["nats_per_sample"] * 24) / 32, rel=1e-6
    )


# ------------------------------------------------------------------------------------------
# per-clip evaluation
def test_evaluate_model_rows_with_the_reference_synthesis(model, clip):
    clips = [("a", clip[: 8 * HOP_LENGTH]), ("b", clip[8000 : 8000 + 6 * HOP_LENGTH])]
    rows = evaluate_model(model, clips, sigma=0.5, mos=False)
    again = evaluate_model(model, list(reversed(clips)), sigma=0.5, mos=False)
    assert [r["clip_id"] for r in rows] == ["a", "b"]
    assert rows[0]["n_samples"] == 8 * HOP_LENGTH and rows[0]["duration_s"] == pytest.approx(2048 / 22050)
    for r in rows:
        assert math.isfinite(r["log_mel_l1"]) and r["log_mel_l1"] > 0 and r["mcd_db"] > 0
    # each clip's latent depends on (seed, clip id) only, not on evaluation order
    assert {r["clip_id"]: r["mcd_db"] for r in rows} == {r["clip_id"]: r["mcd_db"] for r in again}


def test_evaluate_model_with_a_perfect_synthesizer_and_mos(model):
    # 2.30 s: DNSMOS loops it 4 times to 9.2 s, a single 9.01 s window (a 1.9 s clip costs 6)
    audio = load_wav(LJSPEECH_MINI / "wavs" / "LJ001-0001.wav")[0][: 198 * HOP_LENGTH]

    def synth_fn(m, mel, sigma, generator):  # returns the clip the mel came from
        return audio

    cache: dict[str, float] = {}
    rows = evaluate_model(model, [("c", audio)], synth_fn=synth_fn, reference_mos=cache)
    row = rows[0]
    assert row["log_mel_l1"] == 0.0 and row["mcd_db"] == 0.0
    assert row[f"{PRED_MOS_COLUMN}_resynth"] == pytest.approx(row[f"{PRED_MOS_COLUMN}_original"], abs=1e-4)
    assert cache == {"c": row[f"{PRED_MOS_COLUMN}_original"]}


def test_summary_weights_nll_by_samples_and_averages_the_rest():
    rows = [
        {
            "clip_id": "a",
            "duration_s": 1.0,
            "n_samples": 100,
            "nll_nats_per_sample": 1.0,
            "nll_bits_per_sample": 0,
            "mcd_db": 2.0,
        },
        {
            "clip_id": "b",
            "duration_s": 3.0,
            "n_samples": 300,
            "nll_nats_per_sample": 2.0,
            "nll_bits_per_sample": 0,
            "mcd_db": float("nan"),
        },
    ]
    s = summarize(rows)
    assert s["clip_id"] == "SUMMARY" and s["n_samples"] == 400 and s["duration_s"] == 4.0
    assert s["nll_nats_per_sample"] == pytest.approx(1.75)
    assert s["nll_bits_per_sample"] == pytest.approx(1.75 / math.log(2))
    assert s["mcd_db"] == 2.0  # NaN (a non-finite resynthesis) is left out of the mean


# ------------------------------------------------------------------------------------------
# CLI
def test_evaluate_cli_writes_clip_and_summary_rows(tmp_path, model, clip):
    from waveflow.cli import main
    from waveflow.model import save_checkpoint

    data = tmp_path / "data"
    (data / "wavs").mkdir(parents=True)
    ids = ["A", "B", "C", "D"]  # at the default fractions the fallback gives validation one clip
    for k, clip_id in enumerate(ids):
        save_wav(data / "wavs" / f"{clip_id}.wav", clip[k * 4000 : k * 4000 + 6000])
    (data / "metadata.csv").write_text("".join(f"{i}|t|t\n" for i in ids))
    validation = [i for i, s in assign_splits(ids).items() if s == "validation"]
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, None, step=7)
    out = tmp_path / "results.csv"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(ckpt),
            str(ckpt),
            "--data",
            str(data),
            "--split",
            "validation",
            "--sigma",
            "0.6",
            "--out",
            str(out),
            "--no-mos",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["clip_id"] for r in rows] == validation + ["SUMMARY"] + validation + ["SUMMARY"]
    assert rows[1]["step"] == "7" and rows[1]["sigma"] == "0.6" and rows[1]["n_height"] == "8"
    assert float(rows[0]["nll_nats_per_sample"]) == pytest.approx(float(rows[1]["nll_nats_per_sample"]))


def test_evaluate_cli_rejects_bad_input_with_one_line(tmp_path, capsys):
    from waveflow.cli import main

    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "r.csv")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# any sample rate
def at_rate(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    return torch.as_tensor(librosa.resample(audio.numpy(), orig_sr=22050, target_sr=sample_rate))


@pytest.mark.parametrize("sample_rate", [16_000, 44_100])
def test_distances_at_other_sample_rates(clip, sample_rate):
    audio = at_rate(clip, sample_rate)
    assert log_mel_l1(audio, audio, sample_rate=sample_rate) == 0.0
    assert mel_cepstral_distortion(audio, audio, sample_rate=sample_rate) == 0.0
    l1 = [log_mel_l1(audio, with_noise(audio, snr), sample_rate=sample_rate) for snr in (30, 10)]
    mcd = [mel_cepstral_distortion(audio, with_noise(audio, snr), sample_rate=sample_rate) for snr in (30, 10)]
    assert 0 < l1[0] < l1[1] and 0 < mcd[0] < mcd[1]


def test_the_mel_recipe_keeps_seconds_and_hertz():
    assert mel_recipe(22_050) == {
        "n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mels": N_MELS, "f_min": 0.0, "f_max": 8000.0
    }  # fmt: skip
    assert mel_recipe(44_100)["n_fft"] == 2048 and mel_recipe(44_100)["hop_length"] == 512
    assert mel_recipe(16_000)["hop_length"] == 186 and mel_recipe(16_000)["f_max"] == 8000.0
    assert mel_recipe(8_000)["f_max"] == 4000.0  # never above Nyquist


def test_distances_at_22050_hz_are_those_of_the_models_own_mel(clip):
    noisy = with_noise(clip, 20)
    direct = float(np.mean(np.abs(log_mel(clip).numpy() - log_mel(noisy).numpy())))
    assert log_mel_l1(clip, noisy) == log_mel_l1(clip, noisy, sample_rate=22050) == direct  # to the bit
    assert mel_cepstral_distortion(clip, noisy) == mel_cepstral_distortion(clip, noisy, sample_rate=22050.0)
    assert mel_cepstral_distortion(clip, noisy) == mcd_from_log_mels(log_mel(clip).numpy(), log_mel(noisy).numpy())


@pytest.mark.parametrize("bad", [0, -16000, 22050.5, float("nan"), "22050", True, None])
def test_a_bad_sample_rate_is_refused_by_name(clip, bad):
    for fn in (log_mel_l1, mel_cepstral_distortion):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: sample_rate=.*expected a whole number of Hz > 0"):
            fn(clip, clip, sample_rate=bad)
    with pytest.raises(ValueError, match=r"predicted_mos: sample_rate=.*whole number of Hz"):
        predicted_mos(clip, sample_rate=bad)


def test_predicted_mos_resamples_any_rate_to_16_khz():
    from speechmos import dnsmos

    audio = load_wav(LJSPEECH_MINI / "wavs" / "LJ001-0001.wav")[0][: 198 * HOP_LENGTH]  # 1 window
    x16 = at_rate(audio, 16_000)
    assert predicted_mos(x16, sample_rate=16_000) == pytest.approx(float(dnsmos.run(x16.numpy(), 16000)["p808_mos"]))
    # the same clip at 44.1 kHz is scored like the 22.05 kHz original (resampling error only)
    assert predicted_mos(at_rate(audio, 44_100), sample_rate=44_100) == pytest.approx(predicted_mos(audio), abs=0.05)
