"""Several processes, GPUs and nodes: PyTorch's process group set up for ``train``, and the energy of
every rank metered once and gathered on rank 0.

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the node); :func:`setup` reads them, joins the process
group (NCCL on CUDA, gloo on the CPU) with a timeout, so that a lost rank ends the job instead of
hanging it, and returns a :class:`DistContext`: the same methods in a single process, where they are
no-ops, so ``train`` has one code path.

This module holds the rank layout and the process group. Two neighbours hold the rest, and every
public name of theirs is importable from here as well:

- :mod:`~waveflow.train.rank_energy`: who meters what (:class:`RankMeter`): each rank only its own
  GPU, ``cuda:<local rank>``, found through the visible-device mapping (entry ``local rank`` of
  ``CUDA_VISIBLE_DEVICES``); local rank 0 of each node the node's CPU and DRAM. Rank 0 gathers the
  records through the process group, not the file system, so nodes need not share one, and
  :func:`waveflow.energy.merge.merge_records` turns them into one run record.
- :mod:`~waveflow.train.rank_failures`: a failing rank reports a one-line reason to the job's
  store; rank 0 reads it and prints it (:func:`failure_line`), and torchrun ends the job. SIGTERM,
  torchrun's way of stopping the other ranks, raises :class:`JobStopped` so every rank unwinds
  through its ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device
from .rank_energy import RankMeter, cuda_uuid, node_cpu_seconds, only_visible, visible_gpu_entry
from .rank_failures import STOP_GRACE_S, JobStopped, StopHandler, failure_line, is_secondary

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "REPORT_WAIT_S",
    "STOP_GRACE_S",
    "DistContext",
    "JobStopped",
    "RankInfo",
    "RankMeter",
    "StopHandler",
    "backend_for",
    "cuda_uuid",
    "failure_line",
    "is_secondary",
    "local_batch_size",
    "node_cpu_seconds",
    "only_visible",
    "rank_device",
    "rank_info",
    "rank_rows",
    "setup",
    "visible_gpu_entry",
]

#: Seconds a collective (or the forming of the group) may wait for the other ranks before the job
#: fails. Rank 0 validates and writes checkpoints while the others wait, so both must fit in it.
DEFAULT_TIMEOUT_S = 600.0
#: How long rank 0 waits for the other ranks' failure reports once its own collective failed.
REPORT_WAIT_S = 3.0
_KEY = "waveflow/failed/"


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job, from torchrun's environment variables.

    ``launched`` is True under torchrun (or any launcher that sets ``RANK`` and ``WORLD_SIZE``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node: int = 0
    hostname: str = ""
    launched: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_node_main(self) -> bool:
        return self.local_rank == 0


def rank_info(environ: dict[str, str] | None = None) -> RankInfo:
    """Read the rank layout from the environment (a single process when ``RANK`` is unset)."""
    env = os.environ if environ is None else environ
    host = socket.gethostname()
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return RankInfo(hostname=host)

    def number(name: str, default: int | None = None) -> int:
        raw = env.get(name)
        if raw is None and default is not None:
            return default
        try:
            value = int(str(raw))
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r}: expected an integer (set by torchrun)") from None
        if value < 0:
            raise ValueError(f"environment variable {name}={value}: expected an integer >= 0")
        return value

    rank, world = number("RANK"), number("WORLD_SIZE")
    local = number("LOCAL_RANK", rank)
    info = RankInfo(
        rank=rank,
        world_size=world,
        local_rank=local,
        local_world_size=number("LOCAL_WORLD_SIZE", world),
        node=number("GROUP_RANK", 0),
        hostname=host,
        launched=True,
    )
    if not (0 <= rank < world and 0 <= local < info.local_world_size):
        raise ValueError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: expected 0 <= RANK < WORLD_SIZE")
    return info


def local_batch_size(global_batch: int, world_size: int) -> int:
    """Clips per rank: the global batch split evenly (ValueError naming both numbers otherwise)."""
    if global_batch % world_size:
        raise ValueError(
            f"--batch-size {global_batch} is not divisible by the world size {world_size}; expected a multiple of "
            f"{world_size} (the global batch is split evenly over the ranks)"
        )
    return global_batch // world_size


def rank_rows(global_batch: int, rank: int, world_size: int) -> slice:
    """Rows of a global batch that belong to ``rank``: the ``rank``-th of ``world_size`` equal blocks.

    The blocks are disjoint and cover the batch, so the ranks together see exactly what a single
    process would see for the same global batch.
    """
    b = local_batch_size(global_batch, world_size)
    return slice(rank * b, (rank + 1) * b)


def rank_device(device: str, info: RankInfo) -> torch.device:
    """The device of this rank: ``cuda:<local rank>`` under torchrun with ``--device cuda``/``auto``."""
    dev = resolve_device(device)
    if dev.type != "cuda" or not info.launched:
        return dev
    if dev.index is not None and info.world_size > 1:
        raise ValueError(
            f"--device {device} under torchrun: each rank takes cuda:<local rank>; expected --device cuda or auto"
        )
    count = torch.cuda.device_count()
    if info.local_rank >= count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise ValueError(
            f"rank {info.rank}: local rank {info.local_rank} has no GPU: torch sees {count} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={visible}); expected --nproc_per_node <= {count}"
        )
    return torch.device("cuda", info.local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


# ----------------------------------------------------------------------------------------------
class DistContext:
    """The process group of a run, or a single-process stand-in with the same methods.

    Args:
        info: the rank layout.
        device: this rank's device.
        backend: ``"nccl"``, ``"gloo"`` or ``"none"`` (single process).
        store: the job's key-value store (None in a single process); failure reports go there.
        owns_group: whether :meth:`close` should destroy the process group (False when the caller
            had already initialised one).
    """

    def __init__(
        self, info: RankInfo, device: torch.device, backend: str = "none", store: Any = None, owns_group: bool = False
    ) -> None:
        self.info, self.device, self.backend, self.store, self.owns_group = info, device, backend, store, owns_group

    @property
    def distributed(self) -> bool:
        return self.backend != "none"

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def world_size(self) -> int:
        return self.info.world_size

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``module`` (gradients averaged over ranks), or ``module``."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a detached tensor over ranks (the same result on every rank)."""
        if not self.distributed:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)  # gloo has no AVG
        return out / self.world_size

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank: every rank stops at the same step."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def total(self, value: float) -> float:
        """The sum of a number over ranks, e.g. the joules each rank has metered so far."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; tensors inside keep their device)."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def report_failure(self, reason: str) -> None:
        """Leave this rank's one-line reason in the job's store for rank 0 (best effort)."""
        if self.store is None:
            return
        with contextlib.suppress(Exception):
            self.store.set(f"{_KEY}{self.rank}", f"node {self.info.node}: {reason}")

    def failure_reports(self, wait_s: float = REPORT_WAIT_S) -> dict[int, str]:
        """Reasons left by other ranks, waiting up to ``wait_s`` for the first one to arrive."""
        if self.store is None:
            return {}
        deadline = time.monotonic() + wait_s
        while True:
            found = {}
            for r in range(self.world_size):
                if r == self.rank:
                    continue
                with contextlib.suppress(Exception):
                    if self.store.check([f"{_KEY}{r}"]):
                        found[r] = self.store.get(f"{_KEY}{r}").decode("utf-8", "replace")
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        self.owns_group = False


def setup(device: str, timeout_s: float = DEFAULT_TIMEOUT_S, info: RankInfo | None = None) -> DistContext:
    """Join the job's process group when launched by torchrun; a single-process context otherwise.

    Args:
        device: the ``--device`` value; under torchrun CUDA means ``cuda:<local rank>``.
        timeout_s: how long a collective may wait before the job fails (never a hang).
        info: the rank layout (default: read from the environment).
    """
    if not timeout_s > 0:
        raise ValueError(f"--dist-timeout {timeout_s}: expected seconds > 0")
    info = info or rank_info()
    dev = rank_device(device, info)
    if dist.is_available() and dist.is_initialized():  # the caller made the group: use it as it is
        info = RankInfo(
            dist.get_rank(),
            dist.get_world_size(),
            info.local_rank,
            info.local_world_size,
            info.node,
            info.hostname,
            True,
        )
        return DistContext(info, dev, dist.get_backend(), None, owns_group=False)
    if not info.launched:
        return DistContext(info, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = backend_for(dev)
    timeout = timedelta(seconds=timeout_s)
    store = _job_store(info, timeout)
    prefix = f"waveflow/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(prefix + "pg", store),
        rank=info.rank,
        world_size=info.world_size,
        timeout=timeout,
    )
    return DistContext(info, dev, backend, dist.PrefixStore(prefix + "reports", store), owns_group=True)


def _job_store(info: RankInfo, timeout: timedelta) -> Any:
    """A client of the job's TCPStore (torchrun's agent hosts it; otherwise rank 0 does)."""
    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    except (KeyError, ValueError):
        raise ValueError("MASTER_ADDR/MASTER_PORT: expected the rendezvous address set by torchrun") from None
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    return dist.TCPStore(host, port, info.world_size, is_master=not agent and info.rank == 0, timeout=timeout)
