"""waveflow.data: the fixed split, reproducible crops, and bad data found up front."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from waveflow.audio import HOP_LENGTH, N_MELS, SAMPLE_RATE, load_wav
from waveflow.data import DatasetError, DatasetWarning, LJSpeech, assign_splits, split_key, validate_dataset
from waveflow.paths import LJSPEECH_MINI

REAL = LJSPEECH_MINI / "wavs" / "LJ001-0002.wav"


def make_folder(
    root: Path, clips: dict[str, np.ndarray], sample_rate: int = SAMPLE_RATE, extra_lines: tuple[str, ...] = ()
) -> Path:
    """An LJSpeech-format folder of synthetic 16-bit wavs (ids -> audio) plus raw metadata lines."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for clip_id, audio in clips.items():
        sf.write(root / "wavs" / f"{clip_id}.wav", audio, sample_rate, subtype="PCM_16")
        lines.append(f"{clip_id}|text of {clip_id}|text of {clip_id}")
    (root / "metadata.csv").write_text("\n".join(lines + list(extra_lines)) + "\n", encoding="utf-8")
    return root


def tone(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(np.arange(n) * rng.uniform(0.01, 0.2)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# split
def test_mini_set_split_is_fixed_and_has_one_validation_and_one_test_clip():
    ds = {s: LJSpeech(LJSPEECH_MINI, s) for s in ("train", "validation", "test")}
    assert {s: len(d) for s, d in ds.items()} == {"train": 30, "validation": 1, "test": 1}
    # Hash rule at 1 %/1 % leaves both empty on 32 clips; the fallback takes the smallest u(id).
    assert ds["test"].clip_ids == ["LJ001-0019"] and ds["validation"].clip_ids == ["LJ001-0024"]
    everything = sorted(sum((d.clip_ids for d in ds.values()), []))
    assert everything == [f"LJ001-{i:04d}" for i in range(1, 33)]


def test_split_key_is_sha1_and_assignment_is_stable_when_clips_are_added():
    digest = hashlib.sha1(b"LJ001-0019").hexdigest()
    assert split_key("LJ001-0019") == int(digest[:16], 16) / 16**16
    ids = [f"LJ{c:03d}-{i:04d}" for c in range(1, 6) for i in range(1, 201)]
    small = assign_splits(ids[:300], 0.05, 0.05)
    large = assign_splits(ids, 0.05, 0.05)
    assert all(large[i] == small[i] for i in ids[:300])
    counts = {s: sum(v == s for v in large.values()) for s in ("train", "validation", "test")}
    assert 30 <= counts["test"] <= 70 and 30 <= counts["validation"] <= 70  # ~5 % of 1000 each
    assert assign_splits(list(reversed(ids)), 0.05, 0.05) == large  # order does not matter


def test_folder_split_keeps_existing_clips_when_the_folder_grows(tmp_path):
    ids = [f"X-{i:03d}" for i in range(30)]
    make_folder(tmp_path, {i: tone(2000, k) for k, i in enumerate(ids[:20])})
    before = {
        s: set(LJSpeech(tmp_path, s, validation_fraction=0.25, test_fraction=0.25).clip_ids)
        for s in ("train", "validation", "test")
    }
    assert all(before.values())  # the hash rule filled every split, so no fallback fired
    make_folder(tmp_path, {i: tone(2000, k) for k, i in enumerate(ids)})
    after = {
        s: set(LJSpeech(tmp_path, s, validation_fraction=0.25, test_fraction=0.25).clip_ids)
        for s in ("train", "validation", "test")
    }
    for s in before:
        assert before[s] <= after[s]


@pytest.mark.parametrize(
    "kw,pattern",
    [
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "< 1"),
        ({"test_fraction": -0.1}, "test_fraction"),
    ],
)
def test_assign_splits_rejects_bad_fractions(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        assign_splits(["a", "b", "c"], **kw)


# ------------------------------------------------------------------------------------------
# crops
def test_batches_are_a_function_of_seed_and_step_only():
    a = LJSpeech(LJSPEECH_MINI, batch_size=4, seed=3)
    b = LJSpeech(LJSPEECH_MINI, batch_size=4, seed=3, cache=False)  # reads crops from disk
    late = b.batch(17)  # out of order: nothing depends on what was drawn before
    for step in (0, 1, 17):
        x, y = a.batch(step), b.batch(step)
        assert x.ids == y.ids and x.offsets == y.offsets and torch.equal(x.audio, y.audio)
    assert torch.equal(late.audio, a.batch(17).audio)
    assert a.batch(0).ids != a.batch(1).ids or a.batch(0).offsets != a.batch(1).offsets
    assert LJSpeech(LJSPEECH_MINI, batch_size=4, seed=4).batch(0).offsets != a.batch(0).offsets


def test_batch_shapes_offsets_and_mel_match_the_model_contract():
    ds = LJSpeech(LJSPEECH_MINI, batch_size=3, segment=8192, n_height=8)
    batch = ds.batch(2)
    assert batch.audio.shape == (3, 8192)
    assert batch.mel.shape == (3, N_MELS, 8192 // HOP_LENGTH + 1)
    for clip_id, offset, crop in zip(batch.ids, batch.offsets, batch.audio):
        full, _ = load_wav(LJSPEECH_MINI / "wavs" / f"{clip_id}.wav")
        assert 0 <= offset <= full.shape[0] - 8192
        assert torch.equal(crop, full[offset : offset + 8192])


def test_one_epoch_visits_every_training_clip_once():
    ds = LJSpeech(LJSPEECH_MINI, batch_size=5, segment=1024)
    assert ds.steps_per_epoch() == 6
    seen = [i for s in range(6) for i in ds.batch(s).ids]
    assert sorted(seen) == sorted(ds.clip_ids)


def test_dataloader_over_step_batches_gives_the_same_sequence():
    ds = LJSpeech(LJSPEECH_MINI, batch_size=2, segment=2048)
    loader = torch.utils.data.DataLoader(ds.batches(start_step=5, num_steps=3), batch_size=None)
    for k, batch in enumerate(loader):
        assert batch.step == 5 + k and torch.equal(batch.audio, ds.batch(5 + k).audio)


def test_short_clips_are_zero_padded(tmp_path):
    make_folder(tmp_path, {f"S-{i}": tone(1000 + 100 * i, i) for i in range(6)})
    ds = LJSpeech(tmp_path, "train", segment=4096, batch_size=2)
    batch = ds.batch(0)
    for clip_id, crop in zip(batch.ids, batch.audio):
        n = 1000 + 100 * int(clip_id[-1])
        assert crop.shape == (4096,) and torch.all(crop[n:] == 0) and crop[:n].abs().sum() > 0


@pytest.mark.parametrize("segment", [16001, 256])
def test_segment_must_be_a_multiple_of_h_and_long_enough(segment):
    with pytest.raises(ValueError, match="segment"):
        LJSpeech(LJSPEECH_MINI, segment=segment, n_height=16)


def test_full_clips_are_cropped_to_a_hop_multiple():
    ds = LJSpeech(LJSPEECH_MINI, "test")
    utt = ds[0]
    n = sf.info(str(LJSPEECH_MINI / "wavs" / f"{utt.id}.wav")).frames
    assert utt.audio.shape == (n - n % HOP_LENGTH,)
    assert utt.mel.shape == (N_MELS, utt.audio.shape[0] // HOP_LENGTH + 1)


# ------------------------------------------------------------------------------------------
# bad data
@pytest.fixture
def bad_folder(tmp_path) -> Path:
    root = make_folder(
        tmp_path / "bad",
        {f"OK-{i}": tone(3000, i) for i in range(3)},
        extra_lines=(
            "MISSING|no wav|no wav",
            "EMPTY|x|x",
            "TRUNC|x|x",
            "RATE16K|x|x",
            "STEREO|x|x",
            "NAN|x|x",
            "BADCOLS|only two|but|four columns",
            "|empty id|empty id",
            "GARBAGE|x|x",
        ),
    )
    wavs = root / "wavs"
    (wavs / "EMPTY.wav").write_bytes(b"")
    (wavs / "GARBAGE.wav").write_bytes(b"this is not audio at all " * 40)
    real = REAL.read_bytes()
    (wavs / "TRUNC.wav").write_bytes(real[: len(real) - 20_000])  # header intact, data cut short
    sf.write(wavs / "RATE16K.wav", tone(8000, 7), 16_000, subtype="PCM_16")
    sf.write(wavs / "STEREO.wav", np.stack([tone(3000, 8), 0.5 * tone(3000, 9)], axis=1), SAMPLE_RATE, subtype="PCM_16")
    nan = tone(3000, 10)
    nan[100] = np.nan
    sf.write(wavs / "NAN.wav", nan, SAMPLE_RATE, subtype="FLOAT")
    sf.write(wavs / "ORPHAN.wav", tone(3000, 11), SAMPLE_RATE, subtype="PCM_16")
    return root


def test_one_error_lists_every_bad_file_with_its_problem(bad_folder):
    with pytest.warns(DatasetWarning) as record:
        with pytest.raises(DatasetError) as info:
            validate_dataset(bad_folder)
    lines = str(info.value).splitlines()[1:]
    expected = {
        "wavs/MISSING.wav": "missing",
        "wavs/EMPTY.wav": "empty file",
        "wavs/TRUNC.wav": "truncated",
        "wavs/NAN.wav": "non-finite",
        "wavs/GARBAGE.wav": "unreadable",
        "metadata.csv:10": "4 column",
        "metadata.csv:11": "empty clip id",
    }
    assert len(lines) == len(expected)
    for where, what in expected.items():
        assert any(line.strip().startswith(f"{where}: ") and what in line for line in lines), (where, lines)
    warned = str(record[0].message)
    for where, what in {"RATE16K.wav": "resampled", "STEREO.wav": "downmixed", "ORPHAN.wav": "no metadata"}.items():
        assert any(where in line and what in line for line in warned.splitlines())
    assert {c.id for c in info.value.report.clips} == {"OK-0", "OK-1", "OK-2", "RATE16K", "STEREO"}


def test_strict_rejects_wrong_rate_and_channel_count_in_the_same_error(bad_folder):
    with pytest.warns(DatasetWarning):  # the orphan wav is still only a warning
        with pytest.raises(DatasetError) as info:
            validate_dataset(bad_folder, strict=True)
    text = str(info.value)
    assert "wavs/RATE16K.wav: sample rate 16000 Hz; expected 22050 Hz" in text
    assert "wavs/STEREO.wav: 2 channels; expected mono" in text
    assert "wavs/TRUNC.wav" in text and "wavs/MISSING.wav" in text
    assert len(text.splitlines()) == 1 + 9


def test_loading_a_dataset_validates_it(bad_folder):
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="TRUNC"):
        LJSpeech(bad_folder)


def test_wrong_rate_and_stereo_are_resampled_and_downmixed_on_load(tmp_path):
    root = make_folder(tmp_path, {f"OK-{i}": tone(3000, i) for i in range(3)})
    sf.write(root / "wavs" / "R.wav", tone(8000, 7), 16_000, subtype="PCM_16")
    stereo = np.stack([tone(3000, 8), 0.5 * tone(3000, 9)], axis=1)
    sf.write(root / "wavs" / "ST.wav", stereo, SAMPLE_RATE, subtype="PCM_16")
    with (root / "metadata.csv").open("a") as f:
        f.write("R|r|r\nST|s|s\n")
    with pytest.warns(DatasetWarning):
        report = validate_dataset(root)
    splits = [LJSpeech(root, s, report=report, cache=False) for s in ("train", "validation", "test")]
    audio = {ds.clips[i].id: ds.load(i) for ds in splits for i in range(len(ds))}
    assert audio["R"].shape == (int(np.ceil(8000 * SAMPLE_RATE / 16_000)),)
    pcm = sf.read(str(root / "wavs" / "ST.wav"), dtype="float32")[0]
    assert np.allclose(audio["ST"].numpy(), pcm.mean(axis=1), atol=1e-6)


def test_missing_metadata_and_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        validate_dataset(tmp_path / "nothere")
    (tmp_path / "wavs").mkdir()
    with pytest.raises(DatasetError, match="metadata.csv: missing"):
        validate_dataset(tmp_path)


def test_the_real_mini_set_is_clean(recwarn):
    report = validate_dataset(LJSPEECH_MINI)
    assert len(report.clips) == 32 and not report.errors and not report.warnings
    assert not [w for w in recwarn if issubclass(w.category, DatasetWarning)]
