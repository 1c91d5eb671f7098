"""A run folder's append-only metrics log, and where the folder keeps its latest checkpoint.

One JSON object per line, flushed and fsynced line by line: a crash loses at most the line being
written, and a replayed step (after a resume) is logged again rather than edited in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (a crash loses at most the line being written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        # A crash mid-write can leave a partial last line; start a new line so it stays one bad line.
        fh.seek(0, os.SEEK_END)
        if fh.tell():
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_metrics(path: str | os.PathLike, kind: str | None = "train") -> list[dict[str, Any]]:
    """Records of a metrics log, the last one per (kind, step), in step order.

    A partial last line (crash mid-write) is ignored.
    """
    records: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or rec.get("kind") == kind:
                records[(rec.get("kind", ""), int(rec.get("step", -1)))] = rec
    return [records[k] for k in sorted(records, key=lambda k: (k[1], k[0]))]


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """Where a run folder keeps its latest checkpoint (``<run>/checkpoints/last.pt``)."""
    return Path(run_dir) / "checkpoints" / "last.pt"
