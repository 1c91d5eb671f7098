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
