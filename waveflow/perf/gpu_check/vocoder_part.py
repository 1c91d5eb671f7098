"""The GPU check's vocoder part: the vocoder table (:mod:`waveflow.experiments.vocoders`) on the GPU,
where NVML's counter measures what a CPU run can only estimate.

One row per model: J per second of audio at batch 1 (measured), with its × real time, the Vocos
protocol's × real time, and the energy relative to HiFi-GAN V1 in the same run. The quick mode (the
CPU logic check of ``tests/test_gpu_check.py``) runs one small model beside the reference on short clips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .rows import Settings, row, torch_device

#: the models measured on a GPU: this paper's WF2, one of each family, today's vocoders
GPU_MODELS = ("WF2", "hifigan-v1", "melgan", "waveglow", "diffwave", "wavegrad", "vocos", "bigvgan-base", "bigvgan")
QUICK_MODELS = ("melgan-small",)


def part_vocoders(s: Settings) -> Iterator[dict[str, Any]]:
    """The vocoder table on the device: 1-s clips, 5 trials, the Vocos protocol (16 × 1 s)."""
    from ...experiments.vocoders import Protocol, measure_vocoders

    if s.quick:
        names, protocol = QUICK_MODELS, Protocol(seconds=0.07, warmup=0, sweep=(1, 2), sweep_calls=1, vocos_batch=2,
                                                 vocos_seconds=0.07)
    else:
        names, protocol = GPU_MODELS, Protocol(seconds=1.0, sweep=(1, 4, 16), vocos_batch=16, vocos_seconds=1.0)
    device = torch_device(s)
    table, _ = measure_vocoders(names, protocol, device=str(device), log=s.energy_log)
    for r in table.itertuples():
        detail = (
            f"{r.energy_method}; {r.xrt:.4g}x real time at batch 1, {r.vocos_xrt:.4g}x on {r.vocos_batch} x "
            f"{r.vocos_clip_s:.3g} s; {r.relative_energy:.3g} [{r.relative_energy_low:.3g}, "
            f"{r.relative_energy_high:.3g}] x {r.reference}; CV {r.energy_cv:.0%}; random weights"
        )
        yield row("vocoders", f"vocoder {r.model}: J per audio second", "ok", r.j_per_audio_s, "J/s", detail)
