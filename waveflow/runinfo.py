"""What a run of ``reproduce`` was: its manifest, written when it starts and read by the report page.

The report page must describe *the run*, not the machine it is opened on or notebooks left over from an
earlier run. So ``reproduce`` writes ``build/notebooks/run.json`` before the first notebook: when it
started, the profile, the commit, the data folder and its clip count, the notebooks it will run, where
its figures go, and the machine (CPU, GPU, energy counters, software) read at that moment. The page
takes its header from it, and flags any executed notebook that the manifest does not list or that
started before the run did.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .energy import readers
from .energy.record import git_commit
from .files import atomic_write
from .paths import LJSPEECH_MINI

MANIFEST = "run.json"


def machine() -> list[tuple[str, str]]:
    """CPU, GPU and the energy counters this machine offers (read, not assumed)."""
    gpus = "none"
    try:
        import torch

        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpus = ", ".join(names) or "none"
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    try:
        rapl = f"RAPL: {len(readers.rapl_domains())} readable domain(s)"
    except Exception as exc:  # PermissionError on root-only counters
        rapl = f"RAPL: present but unreadable ({type(exc).__name__})"
    try:
        import pynvml

        pynvml.nvmlInit()
        nvml = f"NVML: {pynvml.nvmlDeviceGetCount()} GPU(s)"
        pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: the usual CPU-only case
        nvml = "NVML: unavailable"
    return [
        ("CPU", f"{readers.cpu_brand()} ({os.cpu_count()} logical CPUs)"),
        ("GPU", gpus),
        ("energy counters", f"{rapl}; {nvml}"),
        ("software", f"Python {platform.python_version()}, torch {torch_version}, waveflow {__version__}"),
        ("platform", platform.platform()),
    ]


def clip_count(data: Path) -> int | None:
    """Clips listed in an LJSpeech-format folder's ``metadata.csv`` (None when there is none)."""
    meta = Path(data) / "metadata.csv"
    if not meta.is_file():
        return None
    return sum(1 for line in meta.read_text(encoding="utf-8").splitlines() if line.strip())


def write_manifest(
    folder: Path, profile: str, notebooks: list[str], figures: Path, data: str | None = None
) -> dict[str, Any]:
    """Record the run before its first notebook; returns what was written."""
    data_dir = Path(data) if data else LJSPEECH_MINI
    manifest = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": profile,
        "commit": git_commit(short=True, dirty=True) or "unknown",
        "data": str(data_dir),
        "clips": clip_count(data_dir),
        "notebooks": notebooks,
        "figures": str(figures),
        "machine": machine(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / MANIFEST, lambda p: Path(p).write_text(json.dumps(manifest, indent=1), encoding="utf-8"))
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of the run whose notebooks are in ``folder``, or None (a run made before manifests)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def started_at(value: str | None) -> datetime | None:
    """A papermill or manifest timestamp as an aware datetime (papermill writes naive UTC)."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
