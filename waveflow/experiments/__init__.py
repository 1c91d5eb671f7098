"""The paper's measurements on this machine: E_train and E_gen of WaveFlow (Table 2), the Table 1
models' energy, and held-out quality against training energy.

- :mod:`~waveflow.experiments.measure`: E_train of one configuration, with bounds, and its
  extrapolation to the paper's schedule.
- :mod:`~waveflow.experiments.inference`: E_gen of one configuration and the mels it meters; the
  precision comparison and the batch sweep.
- :mod:`~waveflow.experiments.summary`: held-out quality of a checkpoint, the table joining E_train,
  E_gen and quality, and a training-energy table rescaled to another schedule.
- :mod:`~waveflow.experiments.metered`: the energy columns every E_train and E_gen row shares.
- :mod:`~waveflow.experiments.zoo_energy`: the five Table 1 models' training and generation energy.
- :mod:`~waveflow.experiments.energy_to_quality`: every configuration trained to a common energy
  budget, its held-out NLL against cumulative training joules.

The names of :mod:`~waveflow.experiments.measure`, :mod:`~waveflow.experiments.inference` and
:mod:`~waveflow.experiments.summary` are re-exported here, so ``from waveflow import experiments;
experiments.measure_inference(...)`` works.
"""

from .inference import (
    E_GEN_SECONDS,
    SWEEP_NOISE,
    batch_sweep,
    compare_precisions,
    energy_mels,
    longest_clips,
    measure_inference,
)
from .measure import PAPER_BATCH, PAPER_SEGMENT, PAPER_STEPS, measure_training, paper_steps
from .metered import machine_label, with_provenance
from .summary import SUMMARY_COLUMNS, measure_quality, measured_summary, rescale_schedule

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
    "machine_label",
    "measure_inference",
    "measure_quality",
    "measure_training",
    "measured_summary",
    "paper_steps",
    "rescale_schedule",
    "with_provenance",
]
