"""Up-front checks of an LJSpeech-format folder: every bad file found and named before training.

:func:`validate_dataset` reads ``metadata.csv`` and every wav's header (float wavs are decoded to
look for NaN/inf; PCM cannot hold them) and returns a :class:`DatasetReport`. Problems that make a
clip unusable are errors, reported together in one :class:`DatasetError` with one line per file;
problems :mod:`waveflow.data` can fix on load (wrong sample rate, several channels) are warnings,
or errors with ``strict=True``. Kept apart from :mod:`waveflow.data`, which re-exports it.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from ..audio import HOP_LENGTH, SAMPLE_RATE

MIN_SAMPLES = 3 * HOP_LENGTH  # shortest usable clip: its hop-cropped length must exceed N_FFT // 2
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}  # only these can hold NaN/inf; PCM is finite by construction


class DatasetError(ValueError):
    """Bad data in an LJSpeech-format folder; the message has one line per problem."""

    def __init__(self, message: str, report: DatasetReport | None = None) -> None:
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
                    return (
                        f"truncated: the header declares {chunk_size} bytes of audio ({chunk_size // unit} frames) "
                        f"but only {present} bytes ({present // unit} frames) are present"
                    )
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


def _check_clip(
    root: Path,
    number: int,
    clip_id: str,
    text: str,
    norm: str,
    strict: bool,
    errors: list[Problem],
    warns: list[Problem],
) -> ClipInfo | None:
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
            warns.append(
                Problem(where, f"sample rate {info.samplerate} Hz; resampled to {SAMPLE_RATE} Hz on load", "warning")
            )
    if info.channels != 1:
        if strict:
            errors.append(Problem(where, f"{info.channels} channels; expected mono (1 channel)"))
            bad = True
        else:
            warns.append(
                Problem(where, f"{info.channels} channels; downmixed to mono (channel mean) on load", "warning")
            )
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
        report.errors.append(
            Problem("metadata.csv", "missing; expected an LJSpeech-format metadata.csv (id|text|normalized text)")
        )
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
