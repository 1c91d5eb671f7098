"""LJSpeech-format data: up-front validation, a fixed hash split, reproducible training crops.

:mod:`~waveflow.data.check` validates a folder (metadata, wav headers, sample rate, length) before
any compute; :mod:`~waveflow.data.ljspeech` splits it and draws the batches.
"""

from .check import (
    MIN_SAMPLES,
    ClipInfo,
    DatasetError,
    DatasetReport,
    DatasetWarning,
    Problem,
    validate_dataset,
)
from .ljspeech import (
    DEFAULT_SEGMENT,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    SPLITS,
    Batch,
    LJSpeech,
    StepBatches,
    Utterance,
    assign_splits,
    split_key,
)

__all__ = [
    "DEFAULT_SEGMENT",
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_VALIDATION_FRACTION",
    "MIN_SAMPLES",
    "SPLITS",
    "Batch",
    "ClipInfo",
    "DatasetError",
    "DatasetReport",
    "DatasetWarning",
    "LJSpeech",
    "Problem",
    "StepBatches",
    "Utterance",
    "assign_splits",
    "split_key",
    "validate_dataset",
]
