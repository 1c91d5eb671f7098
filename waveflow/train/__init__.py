"""Training: maximum likelihood on random crops, resumable bit for bit.

A run lives in one folder::

    <out>/run.json                 the training options and model config of the run
    <out>/metrics.jsonl            append-only log, one JSON object per line
    <out>/checkpoints/last.pt      the latest checkpoint (atomic: temp file + rename)
    <out>/checkpoints/step_NNNNNNN.pt  periodic checkpoints

Exact resumption: batches are a pure function of ``(seed, step)`` (:meth:`LJSpeech.batch`), and a
checkpoint holds the model, the Adam state, the step and every RNG state. Resuming from the
checkpoint of step ``s`` therefore replays steps ``s+1 ...`` with the same batches from the same
state, and on a CPU the loss sequence equals that of an uninterrupted run bit for bit
(``tests/test_train.py``). On CUDA, cuDNN's convolution backward may reduce in a different order
from run to run, so losses agree to float rounding only, unless ``deterministic=True`` is passed
(slower kernels). A resume must use the run's data, seed, batch, segment, learning rate and
clipping; a mismatch is an error rather than a silently different run.
Steps that were logged after the last checkpoint of an interrupted run are logged again when
they are replayed; readers keep the last record per step (:func:`read_metrics`).

A NaN or infinite loss or gradient stops the run before the optimiser touches the weights, with
a :class:`TrainingDiverged` error naming the step; the last good checkpoint is left intact.

Several GPUs or nodes: ``torchrun --nproc_per_node=N -m waveflow train ...`` trains with
DistributedDataParallel (:mod:`waveflow.train.distributed`). ``batch_size`` stays the *global* batch:
rank ``r`` of ``W`` trains on rows ``r*B/W .. (r+1)*B/W`` of the batch a single process would draw
(:meth:`LJSpeech.batch` is a pure function of ``(seed, step)``), and DDP averages the gradients
over these equal shares, so one step is the same step as a single process's on the global batch,
to float rounding. The learning rate is used as given, never rescaled with the world size. Only
rank 0 writes checkpoints, the metrics log and the energy records; each checkpoint and the start
record of the log name the world size. A resume may use any world size that divides the batch.

Budgets and quality marks (``--energy-budget J``, ``--time-budget S``, ``--eval-every N``): a run
stops at the first of ``steps``, the energy budget and the time budget. Both count **training**
only: :class:`TrainingSpend` reads the meter's counters around the training steps and leaves out
the held-out evaluations and checkpoint writes, so a configuration with slow evaluation is not
charged for it. Under DDP the budget compares the merged total over ranks (``ctx.total``). What was
spent is kept in every checkpoint (``extra["spent"]``), so a resumed run's budget counts what was
spent before it. Every ``eval_every`` steps a ``mark`` record gives step, examples seen, training
energy (method, low/high bounds for an estimate), training wall seconds and held-out NLL in bits per
sample on fixed held-out crops (the first ``val_samples`` samples of the first ``val_clips``
validation clips that are at least that long). The evaluation saves and restores every RNG, so a
run with marks follows the same weights as a run without (``tests/test_train.py``).

Modules: :mod:`~waveflow.train.options` (what a run is asked and returns), :mod:`~waveflow.train.loop`
(:func:`train` and its steps), :mod:`~waveflow.train.opening` (checks, data, model, resume, meter),
:mod:`~waveflow.train.run_state` (a run between steps: spend, checkpoints, marks),
:mod:`~waveflow.train.metrics` (the log), :mod:`~waveflow.train.evaluation` (held-out scores),
:mod:`~waveflow.train.spend` (energy, time, budgets), :mod:`~waveflow.train.command` (the CLI),
:mod:`~waveflow.train.distributed` (the process group; with :mod:`~waveflow.train.rank_energy` and
:mod:`~waveflow.train.rank_failures`).
"""

from .command import add_arguments, config_from_args, run
from .evaluation import heldout_crops, validation_nll
from .loop import train
from .metrics import append_metrics, last_checkpoint, read_metrics
from .opening import world_size_warning
from .options import PAPER_BATCH, PAPER_STEPS, TrainConfig, TrainingDiverged, TrainResult, positive_number
from .spend import TrainingSpend

__all__ = [
    "PAPER_BATCH",
    "PAPER_STEPS",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingSpend",
    "add_arguments",
    "append_metrics",
    "config_from_args",
    "heldout_crops",
    "last_checkpoint",
    "positive_number",
    "read_metrics",
    "run",
    "train",
    "validation_nll",
    "world_size_warning",
]
