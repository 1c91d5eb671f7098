"""LJSpeech-format datasets: validation up front, a fixed hash split, reproducible training crops.

A folder is in LJSpeech format when it holds ``metadata.csv`` (UTF-8, no header, one clip per
line, ``id|text|normalized text``; two columns ``id|text`` are accepted too) and ``wavs/<id>.wav``.
The full LJSpeech 1.1 (13,100 clips) and the bundled 32-clip ``data/ljspeech-mini`` both work.

Split rule (fixed; changing it changes every reported number). Each clip id gets
``u(id) = int(sha1(id.encode("utf-8")).hexdigest()[:16], 16) / 16**16``, a uniform number in
[0, 1) that depends on the id alone. ``u < test_fraction`` -> test, ``u < test_fraction +
validation_fraction`` -> validation, otherwise train. Adding clips never moves existing ones.
Defaults: 1 % test and 1 % validation (about 131 clips each of LJSpeech's 13,100).
Tiny folders: when the rule leaves test (then validation) empty, that split takes the *train*
clip with the smallest ``u``.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import soundfile as sf
import torch

from ..audio import N_FFT, SAMPLE_RATE, log_mel, whole_hops
from .check import DatasetReport, validate_dataset

SPLITS = ("train", "validation", "test")
DEFAULT_VALIDATION_FRACTION = 0.01  # ~131 LJSpeech clips
DEFAULT_TEST_FRACTION = 0.01  # ~131 LJSpeech clips
DEFAULT_SEGMENT = 16_000  # training crop in samples (0.73 s), as in the WaveFlow paper
CACHE_AUTO_BYTES = 1 << 30  # cache="auto" keeps decoded float32 audio in memory below 1 GiB
_SEED_CROPS, _SEED_EPOCH = 0, 1  # stream tags for the per-step and per-epoch generators

Split = Literal["train", "validation", "test"]


# ------------------------------------------------------------------------------------------
# split
def split_key(clip_id: str) -> float:
    """``u(id)`` in [0, 1): the first 64 bits of sha1(id) as a fraction."""
    return int(hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:16], 16) / 16**16


def assign_splits(
    clip_ids: list[str],
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> dict[str, Split]:
    """Split of every id by the hash rule, with the tiny-folder fallback (see module docstring)."""
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= value < 1.0):
            raise ValueError(f"assign_splits: {name}={value}; expected a fraction in [0, 1)")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"assign_splits: validation_fraction + test_fraction = {validation_fraction + test_fraction}; expected < 1"
        )
    if len(clip_ids) < 3:
        raise ValueError(
            f"assign_splits: {len(clip_ids)} clip(s); expected at least 3 (one each for train, validation, test)"
        )
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

    def __init__(
        self,
        root: str | Path,
        split: Split = "train",
        *,
        segment: int = DEFAULT_SEGMENT,
        n_height: int = 16,
        batch_size: int = 8,
        seed: int = 0,
        cache: bool | str = "auto",
        strict: bool = False,
        validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        report: DatasetReport | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"LJSpeech: split={split!r}; expected one of {SPLITS}")
        if not (isinstance(n_height, int) and n_height >= 1):
            raise ValueError(f"LJSpeech: n_height={n_height!r}; expected a positive integer (the model's h)")
        if not isinstance(segment, int) or segment <= N_FFT // 2 or segment % n_height:
            raise ValueError(
                f"LJSpeech: segment={segment!r}; expected an integer > {N_FFT // 2} and a multiple "
                f"of the model's squeezed height h={n_height}"
            )
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
        audio = audio[: whole_hops(audio.shape[0])]
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
        return Batch(audio, log_mel(audio), tuple(self.clips[i].id for i in indices), tuple(c[1] for c in crops), step)

    def batches(self, start_step: int = 0, num_steps: int | None = None) -> StepBatches:
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
