"""The package installs into any project: the wheel holds every sub-package and its runtime tables,
the core install (the meter, no torch, no pandas) measures a command and a block from a folder
outside the repository, and the full install runs the model's commands.

Both installs are offline: the wheel goes into a scratch virtual environment with ``--no-deps``, and
its dependencies are the ones of this environment, exposed through a ``.pth`` file. The core install
sees only the core's three dependencies, so an import of torch, numpy or pandas there fails.
"""

from __future__ import annotations

import importlib.util
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: import names of the core's dependencies (psutil, nvidia-ml-py, py-cpuinfo)
CORE_IMPORTS = ("psutil", "pynvml", "cpuinfo")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
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
        cwd=dist,
    )
    (path,) = dist.glob("waveflow_energy-*.whl")
    return path


def _scratch_venv(where: Path, wheel: Path, deps: list[str]) -> Path:
    """A venv without pip holding the wheel alone; ``deps`` are folders put on its path."""
    venv.EnvBuilder(with_pip=False).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(deps) + "\n")
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
    return python


def _outside(tmp_path: Path) -> dict[str, str]:
    """An environment for a run from a folder outside the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVEFLOW_") and k != "PYTHONPATH"}
    env["HOME"] = str(tmp_path)
    return env


@pytest.mark.slow
def test_the_wheel_holds_every_package_its_tables_and_its_metadata(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in (
        "waveflow/cli.py",
        "waveflow/model/flow.py",
        "waveflow/data/ljspeech.py",
        "waveflow/energy/meter.py",
        "waveflow/analysis/figures/__init__.py",
        "waveflow/experiments/measure.py",
        "waveflow/measures/quality.py",
        "waveflow/perf/bench.py",
        "waveflow/_data/hardware/cpu_power.csv",
        "waveflow/_data/hardware/cpu_threads.csv",
        "waveflow/_data/hardware/gpus.csv",
        "waveflow/_data/hardware/cpu_power.LICENSE",
        "waveflow/_data/carbon/intensity.csv",
        "waveflow/_data/templates/report.html.j2",
    ):
        assert member in names, f"{member} missing from {wheel.name}"
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(r.split(">")[0].split("=")[0] for r in requires if "extra ==" not in r)
    assert core == ["nvidia-ml-py", "psutil", "py-cpuinfo"], core
    pinned = [
        r for r in requires if "==" in r.split(";")[0] and not any(f'extra == "{x}"' in r for x in ("docs", "dev"))
    ]
    assert not pinned, f"runtime requirements are ranges; exact pins belong in requirements.lock: {pinned}"
    assert any(r.startswith("torch") and 'extra == "audio"' in r for r in requires)
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "waveflow = waveflow.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_core_install_measures_a_command_and_a_block_without_torch(wheel, tmp_path):
    deps = tmp_path / "core-deps"
    deps.mkdir()
    for name in CORE_IMPORTS:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (deps / source.name).symlink_to(source)
    python = _scratch_venv(tmp_path / "core", wheel, [str(deps)])
    work = tmp_path / "my-project"
    work.mkdir()
    env = _outside(tmp_path)

    missing = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'numpy', 'pandas') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert missing == "[]", f"the core install sees {missing}"

    waveflow = str(tmp_path / "core" / "bin" / "waveflow")
    out = subprocess.run(
        [waveflow, "energy", "--", str(python), "-c", "sum(range(10**7))"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "estimated:" in out.stderr or "measured:" in out.stderr, out.stderr
    logs = list(work.rglob("energy_log.csv"))
    assert logs and all(log.is_relative_to(work) for log in logs), "the log goes to the working folder"

    block = (
        "from waveflow.energy import EnergyMeter, summary\n"
        "with EnergyMeter('block', warn=False) as meter:\n"
        "    sum(i * i for i in range(10**6))\n"
        "r = meter.record\n"
        "assert r.joules() > 0 and r.joules_bounds()[0] <= r.joules() <= r.joules_bounds()[1]\n"
        "print(summary(r))\n"
    )
    out = subprocess.run([str(python), "-c", block], capture_output=True, text=True, timeout=300, cwd=work, env=env)
    assert out.returncode == 0, out.stderr
    assert "J" in out.stdout
    tutorial = subprocess.run(
        [str(python), str(ROOT / "examples" / "own_model.py"), "--meter-only"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env=env,
    )
    assert tutorial.returncode == 0, tutorial.stderr
    assert "meter: 3 steps" in tutorial.stdout and "decorated call" in tutorial.stdout
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import waveflow; print(waveflow.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=work,
        ).stdout.strip()
    )
    assert site_packages.is_relative_to(tmp_path / "core"), site_packages
    assert not (site_packages.parent / "build").exists(), "nothing is written inside the installed package"


@pytest.mark.slow
def test_the_full_install_runs_the_model_commands(wheel, tmp_path):
    python = _scratch_venv(tmp_path / "all", wheel, site.getsitepackages())
    env = _outside(tmp_path)
    out = subprocess.run(
        [str(tmp_path / "all" / "bin" / "waveflow"), "params", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "WF5,16,256,86186196" in out.stdout
    where = subprocess.run(
        [str(python), "-c", "import waveflow; print(waveflow.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "all"), f"waveflow imported from {where}, not from the wheel"
