"""Where a record came from: the user's project commit and the version of the tool that measured it.

A joule figure is only comparable with another one when both say which code produced them. The
user's code is the repository of the working directory (:func:`project_commit`, which is what a
researcher running ``python train.py`` inside their project means by "the commit"); the meter's
own code is :func:`tool_version`. Neither ever raises: no git, no repository, or a git that hangs
gives ``""``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["DIST_NAME", "GIT_TIMEOUT_S", "project_commit", "tool_version"]

#: The distribution name the package is installed under (``pip install waveflow-energy``).
DIST_NAME = "waveflow-energy"
#: Seconds one git call may take before the commit is given up as unknown (a network file system, a lock).
GIT_TIMEOUT_S = 2.0


def project_commit(cwd: str | Path | None = None) -> str:
    """The HEAD commit of the git repository containing ``cwd``, ``-dirty`` appended when tracked
    files differ from it; ``""`` outside a repository, without git, or when git fails or times out.

    The answer is kept per directory for the life of the process: the code a process runs is the
    code it loaded, and a decorated function called in a loop must not start two git processes per
    call. :func:`project_commit.cache_clear` forgets it.

    Args:
        cwd: the directory whose repository is asked (default: the current working directory).
    """
    return _project_commit(os.path.realpath(cwd if cwd is not None else os.getcwd()))


@functools.lru_cache(maxsize=16)
def _project_commit(cwd: str) -> str:
    try:
        head = _git(cwd, "rev-parse", "HEAD")
        if head is None or not head:
            return ""
        status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
        return f"{head}-dirty" if status else head
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""


def _git(cwd: str, *args: str) -> str | None:
    """stdout of ``git -C cwd ARGS`` stripped, or None when git fails."""
    out = subprocess.run(
        ["git", "-C", cwd, *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return out.stdout.strip() if out.returncode == 0 else None


project_commit.cache_clear = _project_commit.cache_clear


def tool_version() -> str:
    """The version of the waveflow code that is running (``""`` when it cannot be told).

    Read from the loaded top-level package (always imported before its ``energy`` sub-package, and
    exact for an editable install, whose installed metadata may lag behind), else from the
    installed distribution's metadata.
    """
    package = sys.modules.get(__name__.split(".")[0])
    version = getattr(package, "__version__", "")
    if isinstance(version, str) and version:
        return version
    try:
        return importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return ""
