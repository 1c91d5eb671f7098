"""atomic_write: the target is replaced whole or not at all."""

from __future__ import annotations

import os

import pytest

from waveflow.files import atomic_write


def test_atomic_write_replaces_the_target(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("one"))
    atomic_write(target, lambda tmp: open(tmp, "w").write("two"))
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["out.txt"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("good")

    def crash(tmp: str) -> None:
        open(tmp, "w").write("par")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_text() == "good" and os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask):
    """Not mkstemp's private 0600: a figure, a CSV or the report is as readable as any new file."""
    old = os.umask(umask)
    try:
        target = atomic_write(tmp_path / "table.csv", lambda tmp: open(tmp, "w").write("a,b\n"))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_saved_figure_and_table_are_readable_by_others(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from waveflow.analysis import save_figure, save_table

    old = os.umask(0o022)
    try:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        written = save_figure(fig, "00_mode_check", pd.DataFrame({"x": [0, 1]}), tmp_path)
        save_table(pd.DataFrame({"x": [0, 1]}), "mode_check", tmp_path)
    finally:
        os.umask(old)
        plt.close("all")
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    assert files, written
    for path in files:
        assert path.stat().st_mode & 0o044 == 0o044, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"
