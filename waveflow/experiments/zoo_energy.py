"""Table 1's five models on this machine: energy per second of audio and per training step, and a
bottom-up check of the paper's "TDP x hours" estimates; this module holds the ``zoo`` command.

The paper estimates the training energy of SampleRNN, SING, WaveGAN, GANSynth and FloWaveNet from
the reported GPU, GPU count and hours. :mod:`waveflow.zoo` holds architecture replicas of the five
(exact parameter counts; **not trained generators**: their audio is noise and is never shown), so
their cost can be measured instead of assumed. The work is split three ways:

* :mod:`~waveflow.experiments.zoo_count`: counted FLOPs per inference call (per second of audio)
  and per training step, on meta and cached, and the reported schedules in steps.
* :mod:`~waveflow.experiments.zoo_measure`: metered inference (:func:`measure_zoo_inference`, with
  SampleRNN **extrapolated** from a short clip), the energy-optimal batch (:func:`zoo_batch_sweep`),
  metered training steps (:func:`measure_zoo_training`) and notebook 02's runs (:func:`measure_zoo`).
* :mod:`~waveflow.experiments.zoo_tables`: the command's rows (:func:`zoo_rows`), the schedules
  against the fp32 peak of the reported GPUs (:func:`schedule_table`, :func:`implied_utilisation`,
  :func:`verdict`), notebook 02's :func:`training_cost_table` and its :func:`findings`.

``python -m waveflow zoo`` (:func:`add_arguments`, :func:`run`) prints the counted costs with the
reported schedule, WaveFlow WF2 as the reference row. Every name of the three modules is importable
from here as well.

Counted FLOPs cover matrix products and convolutions only (``FlopCounterMode``, FLOPs = 2 x MACs),
so an implied utilisation is a lower bound on the real arithmetic rate. Every energy number says
how it was obtained (``measured:...``/``estimated:...`` from :class:`~waveflow.energy.EnergyMeter`).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ..data import DEFAULT_SEGMENT
from ..zoo import MODEL_NAMES
from .zoo_count import (
    GENERATOR_PART,
    OTHER_PART,
    REPLICA_NOTE,
    SING_BATCHES_PER_EPOCH,
    SING_EPOCHS,
    flops_per_audio_second,
    flops_per_step,
    schedule_steps,
)
from .zoo_count import _forward_flops as _forward_flops
from .zoo_count import _full as _full
from .zoo_count import _meta_copy as _meta_copy
from .zoo_count import _step_flops as _step_flops
from .zoo_measure import (
    DEFAULT_CLIP_S,
    VARIABLE_LENGTH,
    clip_samples,
    measure_zoo,
    measure_zoo_inference,
    measure_zoo_training,
    zoo_batch_sweep,
)
from .zoo_measure import _bounds as _bounds
from .zoo_measure import _infer as _infer
from .zoo_measure import _log as _log
from .zoo_measure import _model as _model
from .zoo_measure import _notes as _notes
from .zoo_measure import _positive_int as _positive_int
from .zoo_measure import _variant as _variant
from .zoo_tables import (
    FORM_FACTOR_COLUMNS,
    GANSYNTH_FULL_RESOLUTION_FRACTION,
    REFERENCE,
    REFERENCE_CLIP_S,
    REFERENCE_GPUS,
    REFERENCE_STEPS,
    ROW_COLUMNS,
    UTILISATION_COMFORTABLE,
    UTILISATION_DEMANDING,
    UTILISATION_LOW,
    UTILISATION_MAX_PLAUSIBLE,
    findings,
    fp32_peak,
    grade,
    implied_utilisation,
    other_variant,
    reference_row,
    schedule_table,
    training_cost_table,
    verdict,
    zoo_row,
    zoo_rows,
)
from .zoo_tables import _summary as _summary
from .zoo_tables import _with_measurements as _with_measurements

__all__ = [
    "DEFAULT_CLIP_S",
    "FORM_FACTOR_COLUMNS",
    "UTILISATION_COMFORTABLE",
    "UTILISATION_DEMANDING",
    "grade",
    "other_variant",
    "GANSYNTH_FULL_RESOLUTION_FRACTION",
    "GENERATOR_PART",
    "OTHER_PART",
    "REFERENCE",
    "REFERENCE_CLIP_S",
    "REFERENCE_GPUS",
    "REFERENCE_STEPS",
    "REPLICA_NOTE",
    "ROW_COLUMNS",
    "SING_BATCHES_PER_EPOCH",
    "SING_EPOCHS",
    "UTILISATION_LOW",
    "UTILISATION_MAX_PLAUSIBLE",
    "VARIABLE_LENGTH",
    "add_arguments",
    "clip_samples",
    "findings",
    "flops_per_audio_second",
    "flops_per_step",
    "fp32_peak",
    "implied_utilisation",
    "measure_zoo",
    "measure_zoo_inference",
    "measure_zoo_training",
    "reference_row",
    "run",
    "schedule_steps",
    "schedule_table",
    "training_cost_table",
    "verdict",
    "zoo_batch_sweep",
    "zoo_row",
    "zoo_rows",
]


# ----------------------------------------------------------------------------------------------
# `python -m waveflow zoo`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo``."""
    parser.add_argument(
        "--model",
        nargs="+",
        action="extend",
        metavar="NAME",
        help=f"models to show (default: all of {', '.join(MODEL_NAMES)}); WF2 is always the last row",
    )
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")


def run(args: argparse.Namespace) -> int:
    """Print the cost table (counting the full-size models on meta takes a few seconds each)."""
    table = zoo_rows(args.model or MODEL_NAMES, progress=args.format == "table")
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
        return 0
    shown = table.copy()
    for col in ("params_generator", "params_other", "examples_per_step", "reported_gpus", "reported_steps"):
        shown[col] = shown[col].map(lambda v: "-" if pd.isna(v) else f"{int(v):,}")
    for col, fmt in (("audio_s_per_forward", "{:.4g}"), ("inference_gflop_per_audio_s", "{:,.2f}")):
        shown[col] = shown[col].map(fmt.format)
    shown["training_gflop_per_step"] = shown["training_gflop_per_step"].map("{:,.0f}".format)
    shown["reported_hours"] = shown["reported_hours"].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
    print(shown.to_string(index=False))
    print(
        f"Table 1 models: {REPLICA_NOTE}. FLOPs count matrix products and convolutions (2 x MACs) on meta. "
        "A training step is the original code's (WaveGAN: 5 critic updates + 1 generator update; SING: its "
        f"finetune stage). WF2: one forward = a {REFERENCE_CLIP_S:g}-s E_gen clip; 8 x {DEFAULT_SEGMENT:,} samples "
        "per step on 4 TITAN V, hours not published."
    )
    return 0
