"""The paper's measurements on this machine: E_train and E_gen of WaveFlow (Table 2), the Table 1
models' energy, and held-out quality against training energy.

- :mod:`~waveflow.experiments.measure`: E_train and E_gen of one configuration, with bounds; the
  batch sweep; held-out quality of a checkpoint; the extrapolation to the paper's schedule.
- :mod:`~waveflow.experiments.zoo_energy`: the five Table 1 models' training and generation energy.
- :mod:`~waveflow.experiments.energy_to_quality`: every configuration trained to a common energy
  budget, its held-out NLL against cumulative training joules.

The names of :mod:`~waveflow.experiments.measure` are re-exported here, so ``from waveflow import
experiments; experiments.measure_inference(...)`` keeps working.
"""

from .measure import (
    E_GEN_SECONDS,
    PAPER_BATCH,
    PAPER_SEGMENT,
    PAPER_STEPS,
    SUMMARY_COLUMNS,
    SWEEP_NOISE,
    batch_sweep,
    compare_precisions,
    energy_mels,
    longest_clips,
    measure_inference,
    measure_quality,
    measure_training,
    measured_summary,
    paper_steps,
    rescale_schedule,
)

__all__ = [
    "E_GEN_SECONDS",
    "PAPER_BATCH",
    "PAPER_SEGMENT",
    "PAPER_STEPS",
    "SUMMARY_COLUMNS",
    "SWEEP_NOISE",
    "batch_sweep",
    "compare_precisions",
    "energy_mels",
    "longest_clips",
    "measure_inference",
    "measure_quality",
    "measure_training",
    "measured_summary",
    "paper_steps",
    "rescale_schedule",
]
