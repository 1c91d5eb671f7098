"""How fast the code runs on this machine, and what measuring it costs.

- :mod:`~waveflow.perf.bench`: ``make bench``, synthesis and training against the machine's
  matmul peak, the meter's overhead, the kernel-choice rows.
- :mod:`~waveflow.perf.breakdown`: ``make bench-breakdown``, per-op profiles of synthesis and a
  training step.
- :mod:`~waveflow.perf.overhead`: the meter's cost on the work it measures.
- :mod:`~waveflow.perf.workloads`: the mel and the training step that bench times and breakdown profiles.
- :mod:`~waveflow.perf.cpu_kernels`: the model's CPU kernel choices against the library's kernels.
- :mod:`~waveflow.perf.gpu_check`: ``make gpu-check``, the CUDA paths on this machine's GPU, one module
  per group of parts (``rows``, ``energy_parts``, ``path_parts``) and the ``runner``.

Nothing here is imported by the measurements themselves; the sub-modules are imported on use.
"""
