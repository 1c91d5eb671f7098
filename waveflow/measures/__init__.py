"""Measures of a model that do not depend on how it was trained: audio quality and counted FLOPs.

Both the training loop (held-out NLL at quality marks) and the paper's experiments use them, so
they sit below both: :mod:`~waveflow.measures.quality` (held-out NLL, log-mel L1, mel-cepstral
distortion, predicted MOS), :mod:`~waveflow.measures.flops` (FLOPs counted on the aten ops,
cross-checked with thop; the ``flops`` command) and :mod:`~waveflow.measures.evaluation` (the
``evaluate`` command: the measures on checkpoints, clip by clip). The measures work for any model:
:func:`count_flops` and :func:`flops_per_audio_second` count any module or callable, and the mel
distances and predicted MOS take any sample rate.
"""

from .evaluation import evaluate_model
from .flops import FlopCount, aten_flops, count, count_flops, flops_per_audio_second, flops_table, thop_macs
from .quality import (
    heldout_nll,
    log_mel_l1,
    mel_cepstral_distortion,
    predicted_mos,
)

__all__ = [
    "FlopCount",
    "aten_flops",
    "count",
    "count_flops",
    "evaluate_model",
    "flops_per_audio_second",
    "flops_table",
    "heldout_nll",
    "log_mel_l1",
    "mel_cepstral_distortion",
    "predicted_mos",
    "thop_macs",
]
