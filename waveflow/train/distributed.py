"""Several processes, GPUs and nodes: PyTorch's process group set up for ``train``, and the energy of
every rank metered once and gathered on rank 0.

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the node); :func:`setup` reads them, joins the process
group (NCCL on CUDA, gloo on the CPU) with a timeout, so that a lost rank ends the job instead of
hanging it, and returns a :class:`DistContext`: the same methods in a single process, where they are
no-ops, so ``train`` has one code path.

Who meters what (:class:`RankMeter`): each rank meters only its own GPU, ``cuda:<local rank>``,
found through the visible-device mapping (entry ``local rank`` of ``CUDA_VISIBLE_DEVICES``);
local rank 0 of each node meters the node's CPU and DRAM (RAPL reads whole packages; the CPU
estimate covers the torchrun agent's whole process tree, i.e. every rank of the node). Rank 0
gathers the records through the process group, not the file system, so nodes need not share one,
and :func:`waveflow.energy.merge.merge_records` turns them into one run record.

A failing rank reports a one-line reason to the job's store; rank 0 reads it and prints it
(:func:`failure_line`), and torchrun ends the job. SIGTERM, torchrun's way of stopping the other
ranks, raises :class:`JobStopped` so every rank unwinds through its ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..energy import CarbontrackerSession, EnergyMeter, RankEnergy
from ..energy import readers as energy_readers

#: Seconds a collective (or the forming of the group) may wait for the other ranks before the job
#: fails. Rank 0 validates and writes checkpoints while the others wait, so both must fit in it.
DEFAULT_TIMEOUT_S = 600.0
#: How long rank 0 waits for the other ranks' failure reports once its own collective failed.
REPORT_WAIT_S = 3.0
#: After SIGTERM, how long the main thread has to unwind before the watchdog prints and exits.
STOP_GRACE_S = 5.0
_KEY = "waveflow/failed/"


class JobStopped(RuntimeError):
    """This rank was told to stop (SIGTERM from torchrun, usually because another rank failed)."""


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


# ----------------------------------------------------------------------------------------------
# failures
def failure_line(ctx: DistContext, exc: BaseException, step: int | None, checkpoint: Path | None) -> str:
    """Rank 0's one-line account of why the job stopped, from its own error and the others' reports.

    An error of rank 0's own making (not a collective failing, not a stop signal) is the reason;
    otherwise the reports other ranks left in the store are, and a rank that left none was killed
    or lost.
    """
    at = f" at step {step}" if step is not None else ""
    kept = (
        f"; the last good checkpoint {checkpoint} is kept"
        if checkpoint is not None and checkpoint.exists()
        else "; no checkpoint had been written"
    )
    own = _one_line(exc)
    if not is_secondary(exc):
        return f"the job stopped{at}: rank 0 failed: {own}{kept}"
    reports = ctx.failure_reports()
    if reports:
        first = min(reports)
        others = f" (and {len(reports) - 1} more rank(s))" if len(reports) > 1 else ""
        return f"the job stopped{at}: rank {first} failed on {reports[first]}{others}{kept}"
    return (
        f"the job stopped{at}: another rank stopped without a reason (killed, or its node was lost; "
        f"torchrun's summary names it); rank 0 saw {own}{kept}"
    )


def is_secondary(exc: BaseException) -> bool:
    """Errors that only say "another rank is gone": stop signals and failed collectives."""
    if isinstance(exc, JobStopped):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"DistError", "DistBackendError", "DistNetworkError", "DistStoreError"}:
        return True
    text = str(exc)
    return any(s in text for s in ("Connection closed by peer", "Connection reset", "gloo", "NCCL", "timed out"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    text = text.split(" This is typically caused by")[0]  # gloo's advice after the facts
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


class StopHandler:
    """SIGTERM raises :class:`JobStopped` in the main thread; a watchdog covers a blocked main thread.

    torchrun stops the surviving ranks with SIGTERM when one fails. A Python handler runs only
    when the main thread returns to Python, which a CUDA synchronisation behind a dead NCCL
    peer may not do for minutes, so the C-level handler's wake-up byte also goes to a pipe
    watched by a thread: if the main thread has not finished ``STOP_GRACE_S`` after the signal,
    the thread prints ``line()`` (rank 0) and ends the process with 128 + the signal number.
    """

    def __init__(self, ctx: DistContext, grace_s: float = STOP_GRACE_S) -> None:
        self.ctx, self.grace_s = ctx, grace_s
        self.step: int | None = None
        self.checkpoint: Path | None = None
        self.printed = threading.Lock()
        self._previous: Any = None
        self._wakeup_previous: int | None = None
        self._pipe: tuple[int, int] | None = None
        self._done = threading.Event()

    def install(self) -> StopHandler:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals can only be handled in the main thread: leave the defaults

        def on_term(signum: int, frame: Any) -> None:
            raise JobStopped(
                f"stopped by signal {signal.Signals(signum).name} (torchrun ends the job when a rank fails)"
            )

        self._previous = signal.signal(signal.SIGTERM, on_term)
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._wakeup_previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="waveflow-stop-watchdog", daemon=True).start()
        return self

    def quiet(self) -> None:
        """From now on SIGTERM raises nothing: this rank is already reporting and about to exit."""
        if self._pipe is not None:
            with contextlib.suppress(Exception):
                signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def _watch(self) -> None:
        assert self._pipe is not None
        while True:  # other handled signals (SIGINT, ...) write their numbers to the pipe too
            try:
                data = os.read(self._pipe[0], 64)
            except OSError:
                return
            if not data:
                return
            if signal.SIGTERM in data:
                break
        if self._done.wait(self.grace_s):
            return
        if self.ctx.rank == 0 and self.printed.acquire(blocking=False):
            exc = JobStopped("SIGTERM while blocked in a collective or a CUDA call")
            print(
                f"python -m waveflow train: {failure_line(self.ctx, exc, self.step, self.checkpoint)}", file=sys.stderr
            )
            sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)

    def uninstall(self) -> None:
        self._done.set()
        if self._pipe is None:
            return
        with contextlib.suppress(Exception):
            signal.set_wakeup_fd(self._wakeup_previous if self._wakeup_previous is not None else -1)
            signal.signal(signal.SIGTERM, self._previous)
        for fd in self._pipe:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pipe = None


# ----------------------------------------------------------------------------------------------
# energy
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
