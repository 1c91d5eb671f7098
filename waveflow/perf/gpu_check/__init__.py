"""The GPU check: one command that runs every CUDA path of the project and writes down the numbers.

``make gpu-check`` (``python -m waveflow gpu-check``) runs, on the first visible GPU:

* ``tests``: the ``requires_gpu`` tests (``pytest -m requires_gpu``);
* ``nvml``: the NVML meter against itself: the energy counter and the 10 Hz power integration over
  the same ~20 s synthetic load, which should agree within 5 %;
* ``e_gen_WF2``, ``e_gen_WF4``: E_gen as in the paper (10 x 10 s), at batch 1 and at the
  energy-optimal batch of a sweep, then at batch 1 with the synthesis replayed from CUDA graphs,
  with its real-time factor and its speed-up over the eager fast path, and the share of one
  synthesis the GPU spends in kernels, eager and replayed (launch-bound when well below 1);
* ``e_train``: E_train of WF2 over 100 steps at the paper's batch (8 x 16,000 samples),
  extrapolated to its schedule;
* ``resume``: CUDA resume exactness (3 + 3 steps against 6, deterministic kernels);
* ``ddp``: a DDP run through torchrun and NCCL: a 2-GPU step against one process when two GPUs
  are visible, else a 1-GPU NCCL job that must meter its GPU.

Each part runs in its own process with a time limit, so a part that hangs or crashes the CUDA
context becomes a row with its status (``ok``, ``failed``, ``timeout``, ``skipped``) and the
others still run; ``build/results/gpu_check.csv`` is rewritten atomically after every part, and a
short summary goes to ``build/results/gpu_check_summary.txt``. On a machine without CUDA it says so
in one line and exits 0. ``--quick`` shrinks every part (tiny audio, a few steps), and with
``--device cpu`` runs the same logic on the CPU, which is how the tests check it.

Modules: :mod:`~waveflow.perf.gpu_check.rows` (the settings, the result rows, the CSV and the
summary), :mod:`~waveflow.perf.gpu_check.energy_parts` (the device, NVML, E_gen and E_train parts),
:mod:`~waveflow.perf.gpu_check.path_parts` (the tests, resume and DDP parts) and
:mod:`~waveflow.perf.gpu_check.runner` (the parts by name, the runners and the command).
"""

from .energy_parts import NVML_TOLERANCE, part_device, part_e_gen_wf2, part_e_gen_wf4, part_e_train, part_nvml
from .path_parts import launch_train, part_ddp, part_resume, part_tests
from .rows import (
    COLUMNS,
    PAPER_GPU,
    PAPER_TABLE,
    PART_BUDGET_S,
    PARTS,
    TOTAL_BUDGET_S,
    Settings,
    row,
    summary,
    write_csv,
)
from .runner import PART_FUNCTIONS, add_arguments, run, run_check, run_part_inline, run_part_isolated
from .vocoder_part import GPU_MODELS, part_vocoders

__all__ = [
    "GPU_MODELS",
    "COLUMNS",
    "NVML_TOLERANCE",
    "PAPER_GPU",
    "PAPER_TABLE",
    "PARTS",
    "PART_BUDGET_S",
    "PART_FUNCTIONS",
    "TOTAL_BUDGET_S",
    "Settings",
    "add_arguments",
    "launch_train",
    "part_ddp",
    "part_device",
    "part_e_gen_wf2",
    "part_e_gen_wf4",
    "part_e_train",
    "part_nvml",
    "part_resume",
    "part_tests",
    "part_vocoders",
    "row",
    "run",
    "run_check",
    "run_part_inline",
    "run_part_isolated",
    "summary",
    "write_csv",
]
