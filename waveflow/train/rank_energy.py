"""Who meters what in a distributed run: each rank its own GPU, local rank 0 of each node the
node's CPU and DRAM, so every device is metered exactly once.

A rank finds its own GPU through the visible-device mapping (entry ``local rank`` of
``CUDA_VISIBLE_DEVICES``, best its UUID) and narrows the variable to it while its meter picks its
GPUs (:func:`only_visible`). RAPL reads whole packages and the CPU estimate covers the torchrun
agent's whole process tree (:func:`node_cpu_seconds`), i.e. every rank of the node, hence one CPU
meter per node. Rank 0 gathers the parts (:class:`~waveflow.energy.RankEnergy`) through the process
group, and :func:`waveflow.energy.merge.merge_records` turns them into one run record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..energy import CarbontrackerSession, EnergyMeter, RankEnergy
from ..energy import readers as energy_readers

if TYPE_CHECKING:
    from .distributed import DistContext


def visible_gpu_entry(local_index: int, environ: dict[str, str] | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` entry (physical index or UUID) of visible GPU ``local_index``."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return str(local_index)
    entries = [x.strip() for x in visible.split(",") if x.strip()]
    if local_index >= len(entries):
        raise ValueError(
            f"CUDA_VISIBLE_DEVICES={visible!r} lists {len(entries)} GPU(s); expected one for local index {local_index}"
        )
    return entries[local_index]


@contextlib.contextmanager
def only_visible(entry: str) -> Iterator[None]:
    """Narrow ``CUDA_VISIBLE_DEVICES`` to one entry while a meter picks its GPUs, then restore it.

    The meter meters the GPUs the variable lists; CUDA itself read it when it initialised, so the
    change affects no tensor. It is how a rank meters its own GPU and not its neighbours'.
    ``entry`` is best the GPU's UUID: an index may be read in CUDA's or in NVML's order.
    """
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = entry
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def node_cpu_seconds() -> float:
    """CPU seconds of every rank on this node: the torchrun agent's process tree (the agent is
    this worker's parent), or this process tree when not started by torchrun."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return energy_readers.process_tree_cpu_seconds(include_self=True, pid=os.getppid())
    return energy_readers.process_tree_cpu_seconds()


class RankMeter:
    """This rank's share of the run's energy: its own GPU, plus the node's CPU/DRAM on local rank 0.

    Args:
        ctx: the run's context (rank layout and device).
        label: label of the records.
        intensity, pue, cpu_tdp_w: passed to :class:`~waveflow.energy.EnergyMeter`.
        carbontracker_dir: run Carbontracker on local rank 0 of each node, with its logs under
            ``<dir>/node<N>`` (None: off). It meters the whole node, so it runs once per node.
        meter_options: further :class:`~waveflow.energy.EnergyMeter` arguments, overriding the
            defaults above (tests pass fake readers: ``nvml=``, ``powercap_root=``, ``cpu_seconds=``).
    """

    def __init__(
        self,
        ctx: DistContext,
        label: str,
        *,
        intensity: Any = None,
        pue: Any = None,
        cpu_tdp_w: float | None = None,
        carbontracker_dir: str | Path | None = None,
        meter_options: dict[str, Any] | None = None,
    ) -> None:
        self.ctx, self.label = ctx, label
        info = ctx.info
        gpu = ctx.device.type == "cuda"
        cpu = info.is_node_main
        self.measures = tuple(k for k, on in (("gpu", gpu), ("cpu", cpu)) if on)
        self.meter: EnergyMeter | None = None
        self.reason = ""
        self._gpu_entry: str | None = None
        self._gpu_uuid: str | None = None
        if gpu:
            index = ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()
            self._gpu_entry = visible_gpu_entry(index)
            self._gpu_uuid = cuda_uuid(index)
        if self.measures:
            options: dict[str, Any] = dict(
                intensity=intensity,
                pue=pue,
                cpu_tdp_w=cpu_tdp_w,
                gpu=gpu,
                cpu=cpu,
                cpu_seconds=node_cpu_seconds if cpu else None,
            )
            options.update(meter_options or {})
            self.meter = EnergyMeter(label, **options)
        self.session: CarbontrackerSession | None = None
        if carbontracker_dir is not None and info.is_node_main:
            self.session = CarbontrackerSession(
                1, log_dir=Path(carbontracker_dir) / f"node{info.node}", intensity=intensity, pue=pue
            )

    def start(self) -> RankMeter:
        if self.session is not None:
            self.session.start()
            self.session.epoch_start()
        if self.meter is not None:
            # The UUID names the GPU unambiguously, whether or not the meter maps indices through CUDA's order.
            narrow = self._gpu_uuid or self._gpu_entry
            try:
                with only_visible(narrow) if narrow is not None else contextlib.nullcontext():
                    self.meter.start()
            except Exception as exc:  # the meter never raises once started; set-up is guarded too
                self.reason = f"meter failed to start ({type(exc).__name__}: {exc})"
                self.meter = None
        return self

    def stop(self) -> RankEnergy:
        """Stop metering and return this rank's part of the run record."""
        record = None
        if self.meter is not None:
            record = self.meter.stop()
            self._label_gpu(record)
        ct = None
        if self.session is not None:
            result = self.session.stop()
            ct = {"notes": list(self.session.notes)}
            if result is not None:
                ct.update(energy_kwh=float(result.energy_kwh), method=result.method, notes=list(result.notes))
        info = self.ctx.info
        return RankEnergy(info.rank, info.local_rank, info.node, info.hostname, record, self.measures, ct, self.reason)

    def _label_gpu(self, record: Any) -> None:
        """Name the one GPU this rank metered by its entry in the job's ``CUDA_VISIBLE_DEVICES`` (and its
        UUID), not by its position in the narrowed list the meter saw, which is 0 on every rank."""
        gpus = [c for c in record.components if c.kind == "gpu"]
        if len(gpus) != 1 or self._gpu_entry is None:
            return
        name = gpus[0].device.split(" ", 1)[1] if " " in gpus[0].device else gpus[0].device
        uuid = f" [{self._gpu_uuid}]" if self._gpu_uuid else ""
        gpus[0].device = f"gpu:{self._gpu_entry} {name}{uuid}"


def cuda_uuid(index: int) -> str | None:
    """The ``GPU-...`` UUID of CUDA device ``index`` (None without CUDA or on an old torch)."""
    try:
        if not torch.cuda.is_available():
            return None
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
