"""How a distributed job ends when a rank fails: a one-line reason for the whole job, and SIGTERM
turned into an exception that unwinds every rank.

A failing rank reports a one-line reason to the job's store
(:meth:`~waveflow.train.distributed.DistContext.report_failure`); rank 0 reads the reports and
prints one line (:func:`failure_line`), and torchrun ends the job. SIGTERM, torchrun's way of
stopping the other ranks, raises :class:`JobStopped` so every rank unwinds through its ``finally``
blocks; a watchdog thread (:class:`StopHandler`) ends a rank whose main thread is blocked in a
collective or a CUDA call.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .distributed import DistContext

#: After SIGTERM, how long the main thread has to unwind before the watchdog prints and exits.
STOP_GRACE_S = 5.0


class JobStopped(RuntimeError):
    """This rank was told to stop (SIGTERM from torchrun, usually because another rank failed)."""


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

    def __init__(self, ctx: DistContext, grace_s: float = STOP_GRACE_S, prog: str = "waveflow train") -> None:
        self.ctx, self.grace_s = ctx, grace_s
        self.prog = prog  # how the user ran the command, prefixed to the job's one-line reason
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
            print(f"{self.prog}: {failure_line(self.ctx, exc, self.step, self.checkpoint)}", file=sys.stderr)
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
