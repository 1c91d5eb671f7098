"""Atomic file writes, used for every output the project must never leave half-written.

The content goes to a temporary file in the target's folder (same file system, so the rename is
atomic), is flushed to disk, and is then renamed over the target: after a crash the target is
either the previous complete file or the new complete file, never a truncated one.

The temporary file is created private (``mkstemp`` gives mode 0600), so before the rename it gets
the permissions any new file of the user gets (0666 minus the umask): figures, tables and the
report stay readable by whoever may read the user's other files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (``os.umask`` has no getter)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` to produce the content, then move it over ``path`` atomically.

    Args:
        path: the target file (its folder is created).
        write: writes the complete content to the temporary path it is given.
        suffix: suffix of the temporary file (some writers infer the format from it).

    Returns:
        ``path`` as a :class:`~pathlib.Path`. If ``write`` raises, the temporary file is removed
        and the target is left as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p
