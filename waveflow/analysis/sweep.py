"""Which batch size of an energy sweep is best, given how far this meter can be trusted.

Both the WaveFlow sweep (``experiments.batch_sweep``) and the Table 1 models' sweep
(``zoo_measure.zoo_batch_sweep``) mark their optimum here, with one noise margin, so a single "best batch"
is only claimed where no other size is within that margin.
"""

from __future__ import annotations

import pandas as pd

#: Relative spread of repeated energy-per-audio-second measurements of the same synthesis on a shared
#: 2-vCPU VM: within one notebook-04 run, WF1 at batch 2 on the same 0.5-s clips came out at 21.9 and
#: 27.0 J per audio second (23 % apart), and ``make bench`` ratios of the same code moved by up to
#: ±25 % between runs. Batch sizes within this margin of the lowest are not told apart.
SWEEP_NOISE = 0.25


def mark_optimum(table: pd.DataFrame, column: str = "j_per_audio_s", noise: float = SWEEP_NOISE) -> pd.DataFrame:
    """Add ``optimal`` (the lowest ``column``) and ``within_noise`` (within ``noise`` of it) in place; return it."""
    best = table[column].min()
    table["optimal"] = table[column] == best
    table["within_noise"] = table[column] <= best * (1 + noise)
    return table
