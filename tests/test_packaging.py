"""A non-editable install works: the wheel holds every sub-package, and its ``waveflow`` console
script runs from a scratch virtual environment that has never seen the source tree."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_into_a_scratch_venv_and_runs(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("waveflow_energy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "waveflow/cli.py",
        "waveflow/model/flow.py",
        "waveflow/data/ljspeech.py",
        "waveflow/energy/meter.py",
        "waveflow/analysis/figures/__init__.py",
        "waveflow/experiments/measure.py",
        "waveflow/measures/quality.py",
        "waveflow/perf/bench.py",
    ):
        assert module in names, f"{module} missing from {wheel.name}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "waveflow = waveflow.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # A scratch venv without pip; the dependencies (torch, ...) come from this environment's
    # site-packages as a plain path, so its editable finder for the source tree is NOT active.
    scratch = tmp_path / "scratch"
    venv.EnvBuilder(with_pip=False).create(scratch)
    python = scratch / "bin" / "python"
    scratch_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (scratch_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    out = subprocess.run(
        [str(scratch / "bin" / "waveflow"), "params", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "WF5,16,256,86186196" in out.stdout
    where = subprocess.run(
        [str(python), "-c", "import waveflow; print(waveflow.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(scratch), f"waveflow imported from {where}, not from the wheel"
