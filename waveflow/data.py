"""LJSpeech-format datasets: validation up front, a fixed hash split, reproducible training crops.

A folder is in LJSpeech format when it holds ``metadata.csv`` (UTF-8, no header, one clip per
line, ``id|text|normalized text``; two columns ``id|text`` are accepted too) and ``wavs/<id>.wav``.
The full LJSpeech 1.1 (13,100 clips) and the bundled 32-clip ``data/ljspeech-mini`` both work.

Split rule (fixed; changing it changes every reported number). Each clip id gets
``u(id) = int(sha1(id.encode("utf-8")).hexdigest()[:16], 16) / 16**16``, a uniform number in
[0, 1) that depends on the id alone. ``u < test_fraction`` -> test, ``u < test_fraction +
validation_fraction`` -> validation, otherwise train. Adding clips never moves existing ones.
Defaults: 1 % test and 1 % validation (about 131 clips each of LJSpeech's 13,100).
Tiny folders: when the rule leaves test (then validation) empty, that split's threshold is
raised just enough to admit one clip, i.e. it takes the remaining clip with the smallest ``u``.
The fallback is deterministic but, unlike the hash rule, it can change when clips are added (a
new clip may have a smaller ``u``); at the default fractions it never fires on the full
LJSpeech (probability 0.99**13100 ~ 1e-57). The mini set splits 30 / 1 / 1 (train/validation/test).

Training batches are a pure function of ``(seed, step)`` (:meth:`LJSpeech.batch`): the clips of
step ``s`` are positions ``s*B .. s*B+B-1`` of a sequence of per-epoch permutations, each seeded by
``(seed, epoch)``, and the crop offsets come from a generator seeded by ``(seed, step)``. Resuming
at step ``s`` therefore reproduces the exact batches, whatever DataLoader workers do.
"""
from __future__ import annotations

import hashlib
import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import librosa
import numpy as np
import soundfile as sf
import torch

from .audio import HOP_LENGTH, N_FFT, SAMPLE_RATE, log_mel

SPLITS = ("train", "validation", "test")
DEFAULT_VALIDATION_FRACTION = 0.01  # ~131 LJSpeech clips
DEFAULT_TEST_FRACTION = 0.01  # ~131 LJSpeech clips
DEFAULT_SEGMENT = 16_000  # training crop in samples (0.73 s), as in the WaveFlow paper
MIN_SAMPLES = 3 * HOP_LENGTH  # shortest usable clip: its hop-cropped length must exceed N_FFT // 2
CACHE_AUTO_BYTES = 1 << 30  # cache="auto" keeps decoded float32 audio in memory below 1 GiB
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}  # only these can hold NaN/inf; PCM is finite by construction
_SEED_CROPS, _SEED_EPOCH = 0, 1  # stream tags for the per-step and per-epoch generators

Split = Literal["train", "validation", "test"]


class DatasetError(ValueError):
    """Bad data in an LJSpeech-format folder; the message has one line per problem."""

    def __init__(self, message: str, report: "DatasetReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


class DatasetWarning(UserWarning):
    """Data that is usable after a fix (resampling, downmixing) or that is ignored."""


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`validate_dataset`: ``where`` is a path relative to the root or ``metadata.csv:LINE``."""

    where: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class ClipInfo:
    """A usable clip: metadata plus what its header says (no audio decoded).

    ``num_samples`` is the length at ``SAMPLE_RATE`` after any resampling (librosa's
    ``ceil(frames * ratio)``), so crops can be drawn without decoding the file.
    """

    id: str
    path: Path
    text: str
    normalized_text: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def num_samples(self) -> int:
        if self.sample_rate == SAMPLE_RATE:
            return self.frames
        return int(math.ceil(self.frames * SAMPLE_RATE / self.sample_rate))

    @property
    def native(self) -> bool:
        """True when the file can be sliced directly (mono at ``SAMPLE_RATE``)."""
        return self.sample_rate == SAMPLE_RATE and self.channels == 1


@dataclass
class DatasetReport:
    """Outcome of :func:`validate_dataset`: usable clips in metadata order, errors, warnings."""

    root: Path
    strict: bool
    clips: list[ClipInfo] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_message(self) -> str:
        lines = [f"{self.root}: {len(self.errors)} problem(s) in the dataset (strict={self.strict}):"]
        return "\n".join(lines + [f"  {p}" for p in self.errors])

    def raise_for_errors(self) -> None:
        """Raise one :class:`DatasetError` naming every bad file, if there is any."""
        if self.errors:
            raise DatasetError(self.error_message(), self)


# ------------------------------------------------------------------------------------------
# validation
def _wav_data_check(path: Path) -> str | None:
    """Compare a RIFF/WAVE file's declared data size with the bytes present.

    libsndfile silently reads a truncated file short, so a file cut mid-copy would otherwise
    pass as a shorter clip. Returns a problem description, or None (also for non-RIFF files,
    which libsndfile judges on its own).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos, block_align = 12, 0
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"fmt " and chunk_size >= 16:
                block_align = struct.unpack("<HHIIH", f.read(14))[4]
            elif chunk_id == b"data":
                present = size - (pos + 8)
                if chunk_size > present:
                    unit = max(block_align, 1)
                    return (f"truncated: the header declares {chunk_size} bytes of audio ({chunk_size // unit} frames) "
                            f"but only {present} bytes ({present // unit} frames) are present")
                return None
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return "malformed WAV: no complete 'data' chunk"


def _read_metadata(root: Path, errors: list[Problem]) -> list[tuple[int, str, str, str]]:
    """Rows ``(line, id, text, normalized_text)``; malformed lines become errors."""
    meta = root / "metadata.csv"
    try:
        raw = meta.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(Problem("metadata.csv", f"not valid UTF-8 ({exc}); expected UTF-8 text"))
        return []
    rows, seen = [], {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) carry no clip
        where = f"metadata.csv:{number}"
        cols = line.split("|")
        if len(cols) not in (2, 3):
            errors.append(Problem(where, f"{len(cols)} column(s); expected 3 (id|text|normalized text) or 2 (id|text)"))
            continue
        clip_id = cols[0].strip()
        if not clip_id:
            errors.append(Problem(where, "empty clip id; expected the wav's file name without .wav"))
            continue
        if "/" in clip_id or "\\" in clip_id:
            errors.append(Problem(where, f"clip id {clip_id!r} contains a path separator; expected a bare file name"))
            continue
        if clip_id in seen:
            errors.append(Problem(where, f"duplicate clip id {clip_id!r} (first on line {seen[clip_id]})"))
            continue
        seen[clip_id] = number
        rows.append((number, clip_id, cols[1], cols[-1]))
    return rows


def _check_clip(root: Path, number: int, clip_id: str, text: str, norm: str, strict: bool,
                errors: list[Problem], warns: list[Problem]) -> ClipInfo | None:
    path = root / "wavs" / f"{clip_id}.wav"
    where = f"wavs/{clip_id}.wav"
    if not path.is_file():
        errors.append(Problem(where, f"missing (metadata.csv line {number} names clip {clip_id!r})"))
        return None
    if path.stat().st_size == 0:
        errors.append(Problem(where, "empty file (0 bytes)"))
        return None
    truncated = _wav_data_check(path)
    if truncated:
        errors.append(Problem(where, truncated))
        return None
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises its own error types
        errors.append(Problem(where, f"unreadable as audio ({exc})"))
        return None
    if info.frames == 0:
        errors.append(Problem(where, "no audio frames (header only)"))
        return None
    bad = False
    if info.samplerate != SAMPLE_RATE:
        if strict:
            errors.append(Problem(where, f"sample rate {info.samplerate} Hz; expected {SAMPLE_RATE} Hz"))
            bad = True
        else:
            warns.append(Problem(where, f"sample rate {info.samplerate} Hz; resampled to {SAMPLE_RATE} Hz on load", "warning"))
    if info.channels != 1:
        if strict:
            errors.append(Problem(where, f"{info.channels} channels; expected mono (1 channel)"))
            bad = True
        else:
            warns.append(Problem(where, f"{info.channels} channels; downmixed to mono (channel mean) on load", "warning"))
    if info.subtype in _FLOAT_SUBTYPES:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        n_bad = int((~np.isfinite(data)).sum())
        if n_bad:
            errors.append(Problem(where, f"{n_bad} non-finite (NaN/inf) sample(s); expected finite audio"))
            bad = True
    clip = ClipInfo(clip_id, path, text, norm, int(info.samplerate), int(info.channels), int(info.frames))
    if clip.num_samples < MIN_SAMPLES:
        errors.append(Problem(where, f"too short: {clip.num_samples} samples; expected at least {MIN_SAMPLES}"))
        bad = True
    return None if bad else clip


def validate_dataset(root: str | Path, strict: bool = False, raise_errors: bool = True) -> DatasetReport:
    """Check every metadata row and wav of an LJSpeech-format folder before any training.

    Errors: malformed metadata lines (column count, empty/duplicate id), missing wavs, empty,
    unreadable or truncated files (the RIFF data chunk is shorter than its header says), clips
    shorter than ``MIN_SAMPLES``, non-finite samples (float wavs are decoded to check; PCM cannot
    hold them, so 16-bit LJSpeech is checked from headers alone, in seconds). A wrong sample rate
    or channel count is a warning (the clip is resampled/downmixed on load) unless ``strict``,
    where it is an error. Wavs without a metadata row are a warning and are ignored.

    Args:
        root: the folder holding ``metadata.csv`` and ``wavs/``.
        strict: reject clips that would need resampling or downmixing (default False).
        raise_errors: raise :class:`DatasetError` listing every error (default True); False
            returns the report as is, e.g. to show it in a notebook.

    Warnings are emitted as one :class:`DatasetWarning` with one line per clip.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    report = DatasetReport(root=root, strict=strict)
    if not (root / "metadata.csv").is_file():
        report.errors.append(Problem("metadata.csv", "missing; expected an LJSpeech-format metadata.csv (id|text|normalized text)"))
        if raise_errors:
            report.raise_for_errors()
        return report
    rows = _read_metadata(root, report.errors)
    for number, clip_id, text, norm in rows:
        clip = _check_clip(root, number, clip_id, text, norm, strict, report.errors, report.warnings)
        if clip is not None:
            report.clips.append(clip)
    listed = {clip_id for _, clip_id, _, _ in rows}
    wav_dir = root / "wavs"
    for extra in sorted(wav_dir.glob("*.wav")) if wav_dir.is_dir() else []:
        if extra.stem not in listed:
            report.warnings.append(Problem(f"wavs/{extra.name}", "no metadata.csv row; ignored", "warning"))
    if not report.errors and not report.clips:
        report.errors.append(Problem("metadata.csv", "lists no clips; expected at least one id|text line"))
    if report.warnings:
        lines = "\n".join(f"  {p}" for p in report.warnings)
        warnings.warn(f"{root}: {len(report.warnings)} warning(s):\n{lines}", DatasetWarning, stacklevel=2)
    if raise_errors:
        report.raise_for_errors()
    return report


# ------------------------------------------------------------------------------------------
# split
def split_key(clip_id: str) -> float:
    """``u(id)`` in [0, 1): the first 64 bits of sha1(id) as a fraction."""
    return int(hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:16], 16) / 16**16


def assign_splits(clip_ids: list[str], validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION) -> dict[str, Split]:
    """Split of every id by the hash rule, with the tiny-folder fallback (see module docstring)."""
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= value < 1.0):
            raise ValueError(f"assign_splits: {name}={value}; expected a fraction in [0, 1)")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(f"assign_splits: validation_fraction + test_fraction = {validation_fraction + test_fraction}; expected < 1")
    if len(clip_ids) < 3:
        raise ValueError(f"assign_splits: {len(clip_ids)} clip(s); expected at least 3 (one each for train, validation, test)")
    keys = {i: split_key(i) for i in clip_ids}
    out: dict[str, Split] = {}
    for i, u in keys.items():
        out[i] = "test" if u < test_fraction else "validation" if u < test_fraction + validation_fraction else "train"
    for split in ("test", "validation"):
        if split not in out.values():
            candidates = [i for i in clip_ids if out[i] == "train"] or [i for i in clip_ids if out[i] != "test"]
            out[min(candidates, key=keys.__getitem__)] = split
    return out


# ------------------------------------------------------------------------------------------
# datasets
def _seeded(seed: int, tag: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, tag, index), well mixed by NumPy's SeedSequence."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag, int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


@dataclass(frozen=True)
class Utterance:
    """A full clip for evaluation: audio ``(time,)`` cropped to a multiple of the hop, mel ``(n_mels, frames)``."""

    id: str
    audio: torch.Tensor
    mel: torch.Tensor
    text: str

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE


@dataclass(frozen=True)
class Batch:
    """One training batch: audio ``(B, segment)``, mel ``(B, n_mels, segment // hop + 1)``."""

    audio: torch.Tensor
    mel: torch.Tensor
    ids: tuple[str, ...]
    offsets: tuple[int, ...]
    step: int


class LJSpeech(torch.utils.data.Dataset):
    """One split of an LJSpeech-format folder; validated on construction.

    ``dataset[i]`` is the i-th full clip (:class:`Utterance`) for evaluation; ``batch(step)``
    gives training crops.

    Args:
        root: folder with ``metadata.csv`` and ``wavs/``.
        split: ``"train"``, ``"validation"`` or ``"test"`` (default ``"train"``).
        segment: training crop length in samples (default 16,000); must be a multiple of
            ``n_height``. Shorter clips are zero-padded at the end.
        n_height: the model's squeezed height h (``config.n_height``, default 16).
        batch_size: clips per training batch (default 8, the paper's).
        seed: seed of the epoch permutations and crop offsets (default 0).
        cache: keep decoded audio in memory: True, False, or ``"auto"`` (default): only when the
            split's decoded float32 audio is below ``CACHE_AUTO_BYTES`` (1 GiB). The mini set is
            ~20 MB decoded; all of LJSpeech is ~3.8 GB, so "auto" does not cache its train split
            and instead reads just the crop's frames from disk. The cache fills lazily on access.
        strict: passed to :func:`validate_dataset` (reject wrong rate / channel count).
        validation_fraction, test_fraction: the split rule's fractions (default 0.01 each).
        report: a report from :func:`validate_dataset` to reuse (skips re-validating the folder
            when building all three splits).
    """

    def __init__(self, root: str | Path, split: Split = "train", *, segment: int = DEFAULT_SEGMENT,
                 n_height: int = 16, batch_size: int = 8, seed: int = 0, cache: bool | str = "auto",
                 strict: bool = False, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                 test_fraction: float = DEFAULT_TEST_FRACTION, report: DatasetReport | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"LJSpeech: split={split!r}; expected one of {SPLITS}")
        if not (isinstance(n_height, int) and n_height >= 1):
            raise ValueError(f"LJSpeech: n_height={n_height!r}; expected a positive integer (the model's h)")
        if not isinstance(segment, int) or segment <= N_FFT // 2 or segment % n_height:
            raise ValueError(f"LJSpeech: segment={segment!r}; expected an integer > {N_FFT // 2} and a multiple "
                             f"of the model's squeezed height h={n_height}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"LJSpeech: batch_size={batch_size!r}; expected a positive integer")
        if cache not in (True, False, "auto"):
            raise ValueError(f"LJSpeech: cache={cache!r}; expected True, False or 'auto'")
        self.root = Path(root)
        self.report = report if report is not None else validate_dataset(self.root, strict=strict)
        self.report.raise_for_errors()
        assignment = assign_splits([c.id for c in self.report.clips], validation_fraction, test_fraction)
        self.clips = [c for c in self.report.clips if assignment[c.id] == split]
        self.split, self.segment, self.n_height = split, segment, n_height
        self.batch_size, self.seed = batch_size, seed
        decoded_bytes = 4 * sum(c.num_samples for c in self.clips)
        self.cache_enabled = decoded_bytes < CACHE_AUTO_BYTES if cache == "auto" else bool(cache)
        self._cache: dict[str, torch.Tensor] = {}
        self._perms: dict[int, torch.Tensor] = {}

    # ---------------------------------------------------------------------------------------
    @property
    def clip_ids(self) -> list[str]:
        return [c.id for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, index: int) -> torch.Tensor:
        """Full decoded clip ``(time,)`` at ``SAMPLE_RATE``, mono (resampled/downmixed if needed)."""
        clip = self.clips[index]
        if clip.id in self._cache:
            return self._cache[clip.id]
        data, sr = sf.read(str(clip.path), dtype="float32", always_2d=True)
        audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if sr != SAMPLE_RATE:
            audio = librosa.resample(audio, orig_sr=sr, target_sr=SAMPLE_RATE)
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        if self.cache_enabled:
            self._cache[clip.id] = x
        return x

    def __getitem__(self, index: int) -> Utterance:
        audio = self.load(index)
        audio = audio[: audio.shape[0] - audio.shape[0] % HOP_LENGTH]
        clip = self.clips[index]
        return Utterance(clip.id, audio, log_mel(audio), clip.normalized_text)

    def utterances(self, max_clips: int | None = None) -> Iterator[Utterance]:
        """Full clips in metadata order (the first ``max_clips`` if given)."""
        for i in range(len(self) if max_clips is None else min(max_clips, len(self))):
            yield self[i]

    # ---------------------------------------------------------------------------------------
    def _crop(self, index: int, u: float) -> tuple[torch.Tensor, int]:
        clip = self.clips[index]
        n = clip.num_samples
        offset = min(int(u * (n - self.segment + 1)), n - self.segment) if n > self.segment else 0
        if self.cache_enabled or not clip.native:
            x = self.load(index)[offset : offset + self.segment]
        else:  # read only the crop's frames
            data, _ = sf.read(str(clip.path), start=offset, stop=offset + self.segment, dtype="float32")
            x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        if x.shape[0] < self.segment:
            x = torch.nn.functional.pad(x, (0, self.segment - x.shape[0]))
        return x, offset

    def _permutation(self, epoch: int) -> torch.Tensor:
        # A batch spans at most a few epochs; keep the last few permutations (13,100 ints each).
        if epoch not in self._perms:
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))
            self._perms[epoch] = torch.randperm(len(self.clips), generator=_seeded(self.seed, _SEED_EPOCH, epoch))
        return self._perms[epoch]

    def steps_per_epoch(self) -> float:
        """Training steps per pass over the split (the paper converts steps to epochs)."""
        return len(self.clips) / self.batch_size

    def batch(self, step: int) -> Batch:
        """The training batch of ``step``: a pure function of ``(seed, step)``.

        Clips are positions ``step*B ..`` of the concatenated per-epoch permutations; each crop
        offset is ``floor(u * (n - segment + 1))`` with ``u`` drawn from the ``(seed, step)`` generator.
        """
        if not self.clips:
            raise ValueError(f"LJSpeech: the {self.split!r} split of {self.root} is empty; expected clips to train on")
        if step < 0:
            raise ValueError(f"LJSpeech.batch: step={step}; expected step >= 0")
        n, b = len(self.clips), self.batch_size
        positions = range(step * b, step * b + b)
        indices = [int(self._permutation(p // n)[p % n]) for p in positions]
        us = torch.rand(b, generator=_seeded(self.seed, _SEED_CROPS, step), dtype=torch.float64).tolist()
        crops = [self._crop(i, u) for i, u in zip(indices, us)]
        audio = torch.stack([c[0] for c in crops])
        return Batch(audio, log_mel(audio), tuple(self.clips[i].id for i in indices),
                     tuple(c[1] for c in crops), step)

    def batches(self, start_step: int = 0, num_steps: int | None = None) -> "StepBatches":
        """Batches ``start_step, start_step + 1, ...`` as a map-style dataset for a DataLoader.

        Use ``DataLoader(ds.batches(s), batch_size=None, num_workers=k)``: each item is computed from
        its step alone, so workers and resumption cannot change the sequence.
        """
        return StepBatches(self, start_step, num_steps)


class StepBatches(torch.utils.data.Dataset):
    """``item k`` = ``dataset.batch(start_step + k)``; length ``num_steps`` (default: effectively unbounded)."""

    def __init__(self, dataset: LJSpeech, start_step: int = 0, num_steps: int | None = None) -> None:
        self.dataset, self.start_step = dataset, start_step
        self.num_steps = num_steps if num_steps is not None else 2**62

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < self.num_steps:
            raise IndexError(k)
        return self.dataset.batch(self.start_step + k)
