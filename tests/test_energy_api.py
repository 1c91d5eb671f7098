"""The meter's user-facing API: windows, live reads, the decorator, JSON, provenance and the public face.

Every figure comes from the injected fakes of ``test_energy`` (a powercap tree, a fake NVML, a CPU
clock), so each value is exact: a CPU second on the VM below is 25 J, bounded by 22.5 J and 50 J.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_energy import FakeNvml, cpu_clock, make_powercap, set_uj

import waveflow
import waveflow.energy
from waveflow.cli import main as cli_main
from waveflow.energy import (
    RECORD_COLUMNS,
    EnergyMeter,
    EnergyRecord,
    Interval,
    Measurement,
    append_record,
    measure_energy,
    read_records,
)
from waveflow.energy import provenance as pv
from waveflow.energy import readers as er

#: A 2-vCPU VM on a 100 W package of 4 hardware threads: 25 W per busy thread, low 22.5 W, high 50 W.
VM = er.CpuInfo(logical=2, visible=2, packages=1, threads_per_package=2, hypervisor=True)
PER_CPU_S, LOW_PER_CPU_S, HIGH_PER_CPU_S = 25.0, 22.5, 50.0


@pytest.fixture(autouse=True)
def vm(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(er.POWERCAP_ENV, raising=False)
    monkeypatch.setattr(er, "cpu_info", lambda: VM)
    monkeypatch.setattr(er, "cpu_brand", lambda: "Test CPU")


def estimating(clock, label: str = "api") -> EnergyMeter:
    """A meter whose only component is the CPU estimate, driven by ``clock`` (one value per reading)."""
    return EnergyMeter(
        label, nvml=False, powercap_root="/nonexistent", cpu_tdp_w=100, cpu_threads=4, cpu_seconds=clock, pue=1.0
    )


@pytest.fixture
def rapl(tmp_path):
    """A powercap tree with one package and its DRAM, both at 0 J."""
    return make_powercap(
        tmp_path / "powercap",
        {"intel-rapl:0": ("package-0", 0, 2**40), "intel-rapl:0:0": ("dram", 0, 2**40)},
    )


def measuring(root: Path, nvml: FakeNvml | bool = False, label: str = "api") -> EnergyMeter:
    """A meter whose components are all measured: RAPL package and DRAM, and the fake NVML's GPUs."""
    return EnergyMeter(label, nvml=nvml, powercap_root=root, pue=1.0)


def add_cpu_j(root: Path, joules: float) -> None:
    """Advance the fake RAPL package counter by ``joules``."""
    path = root / "intel-rapl:0" / "energy_uj"
    set_uj(root, "intel-rapl:0", int(path.read_text()) + round(joules * 1e6))


# ------------------------------------------------------------------------------------------
# windows
def test_window_measures_its_block_with_bounds_method_and_scope():
    # readings: built, start, window in, window out, stop
    with estimating(cpu_clock([0.0, 0.0, 1.0, 3.0, 3.0])) as meter:
        with meter.window("epoch 1") as m:
            assert not m.done and math.isnan(m.joules)  # filled in when the block exits
    assert m.done and m.name == "epoch 1"
    assert m.joules == pytest.approx(2 * PER_CPU_S)
    assert (m.joules_low, m.joules_high) == pytest.approx((2 * LOW_PER_CPU_S, 2 * HIGH_PER_CPU_S))
    (cpu,) = m.components
    assert (cpu.kind, cpu.method, cpu.scope) == ("cpu", er.METHOD_TDP_PER_THREAD, "process-tree")
    assert m.estimated and m.methods() == {"cpu": er.METHOD_TDP_PER_THREAD}
    assert m.joules_of("cpu") == m.joules and m.joules_of("gpu") == 0.0
    with pytest.raises(AttributeError):
        m.joules = 0.0  # frozen: the meter fills it once, users only read it

    (section,) = meter.record.sections
    assert section.label == "epoch 1" and section.total_j == pytest.approx(m.joules)
    assert section.joules_bounds() == pytest.approx((m.joules_low, m.joules_high))
    assert section.methods() == {"cpu": er.METHOD_TDP_PER_THREAD} and section.scopes() == {"cpu": "process-tree"}
    assert Measurement.from_interval(section).joules_high == pytest.approx(m.joules_high)


def test_measured_components_have_bounds_equal_to_their_value(rapl):
    nvml = FakeNvml(n=1)
    with measuring(rapl, nvml) as meter:
        with meter.window("step") as m:
            add_cpu_j(rapl, 3.0)
            set_uj(rapl, "intel-rapl:0:0", 500_000)  # +0.5 J DRAM
            nvml.energy_mj[0] += 40_000  # +40 J
    assert m.joules == m.joules_low == m.joules_high == pytest.approx(43.5)
    assert not m.estimated
    assert m.methods() == {"gpu": er.METHOD_NVML_ENERGY, "cpu": er.METHOD_RAPL, "dram": er.METHOD_RAPL}
    assert {c.scope for c in m.components} == {"device"}
    assert (m.joules_of("gpu"), m.joules_of("cpu"), m.joules_of("dram")) == pytest.approx((40.0, 3.0, 0.5))
    assert all(c["joules_low"] == c["joules_high"] == c["joules"] for c in m.to_dict()["components"])


def test_windows_nest_and_overlap_and_go_to_the_record_in_closing_order(rapl):
    with measuring(rapl) as meter:
        meter.begin_window("a")
        add_cpu_j(rapl, 1.0)
        meter.begin_window("b")
        with meter.window("c") as c:
            add_cpu_j(rapl, 2.0)
        a = meter.end_window("a")  # overlaps b: a ends while b is open
        add_cpu_j(rapl, 4.0)
        b = meter.end_window("b")
    assert (a.joules, b.joules, c.joules) == pytest.approx((3.0, 6.0, 2.0))
    assert a.start_s <= b.start_s <= c.start_s and c.end_s <= a.end_s <= b.end_s
    sections = meter.record.sections
    assert [s.label for s in sections] == ["c", "a", "b"]
    assert [s.total_j for s in sections] == pytest.approx([2.0, 3.0, 6.0])
    assert meter.record.energy_j == pytest.approx(7.0)


def test_with_windows_may_share_a_name_but_named_windows_may_not(rapl):
    with measuring(rapl) as meter:
        with meter.window("step") as outer:
            add_cpu_j(rapl, 1.0)
            with meter.window("step") as inner:
                add_cpu_j(rapl, 2.0)
        meter.begin_window("x")
        with pytest.raises(ValueError, match="already open"):
            meter.begin_window("x")
        with pytest.raises(ValueError, match="no window of that name is open"):
            meter.end_window("y")
        assert meter.end_window("x").joules == 0.0
    assert (outer.joules, inner.joules) == pytest.approx((3.0, 2.0))


def test_a_window_needs_a_running_meter():
    meter = estimating(cpu_clock([0.0]))
    with pytest.raises(RuntimeError, match=r"not started.*meter\.start\(\)"):
        with meter.window("early"):
            pass
    with pytest.raises(RuntimeError, match="not started"):
        meter.begin_window("early")
    with pytest.raises(RuntimeError, match="not started"):
        meter.read()
    meter.start().stop()
    with pytest.raises(RuntimeError, match="stopped"):
        with meter.window("late"):
            pass
    # a section is the forgiving form: no meter running, nothing measured, nothing raised
    with meter.section("late") as m:
        pass
    assert not m.done and meter.record.sections == []


def test_windows_open_at_stop_end_there(rapl):
    meter = measuring(rapl).start()
    meter.begin_window("named")
    with meter.window("with") as w:
        add_cpu_j(rapl, 5.0)
        record = meter.stop()
    named = meter.end_window("named")
    assert w.joules == named.joules == pytest.approx(5.0)
    assert [s.label for s in record.sections] == ["named", "with"]
    assert sum("was still open when the meter stopped" in n for n in record.notes) == 2


def test_an_exception_in_a_window_ends_it_and_propagates(rapl):
    with measuring(rapl) as meter:
        with pytest.raises(KeyError):
            with meter.window("boom") as m:
                add_cpu_j(rapl, 1.5)
                raise KeyError("x")
    assert m.joules == pytest.approx(1.5) and meter.record.sections[0].label == "boom"


def test_sections_now_yield_a_measurement_and_keep_bounds():
    with estimating(cpu_clock([0.0, 0.0, 0.0, 2.0, 2.0])) as meter:
        with meter.section("s") as m:
            pass
    assert (m.joules, m.joules_low, m.joules_high) == pytest.approx((50.0, 45.0, 100.0))
    cell = json.loads(meter.record.row()["sections"])[0]
    assert {"label", "start_s", "end_s", "joules"} <= set(cell)  # the cell's original keys keep their meaning
    assert cell["joules"] == {"cpu": 50.0} and (cell["low"], cell["high"]) == ({"cpu": 45.0}, {"cpu": 100.0})
    assert cell["methods"] == {"cpu": er.METHOD_TDP_PER_THREAD} and cell["scopes"] == {"cpu": "process-tree"}


def test_an_interval_built_without_components_keeps_the_original_cell():
    """Intervals rebuilt from per-kind joules alone (a multi-rank merge) write the cell as before."""
    interval = Interval("epoch", 0.0, 2.0, {"gpu": 10.0, "cpu": 2.0})
    assert interval.cell() == {"label": "epoch", "start_s": 0.0, "end_s": 2.0, "joules": {"gpu": 10.0, "cpu": 2.0}}
    assert interval.joules_bounds() == (12.0, 12.0) and not interval.estimated
    assert Measurement.from_interval(interval).joules_low == 12.0


# ------------------------------------------------------------------------------------------
# live reading
def test_read_is_live_monotonic_and_leaves_the_meter_running(rapl):
    with measuring(rapl) as meter:
        readings = []
        for joules in (1.0, 0.0, 2.5):
            add_cpu_j(rapl, joules)
            readings.append(meter.read())
        assert meter.running
    totals = [r.joules for r in readings]
    assert totals == pytest.approx([1.0, 1.0, 3.5])
    assert totals == sorted(totals) and [r.seconds for r in readings] == sorted(r.seconds for r in readings)
    assert all(r.start_s == 0.0 and r.name == "api" for r in readings)
    final = meter.read()  # after stop: the whole block
    assert final.joules == pytest.approx(meter.record.energy_j) and final.seconds == meter.record.wall_s


def test_read_carries_the_estimates_bounds_for_a_budget():
    budget_j = 60.0
    steps = 0
    with estimating(cpu_clock([0.0, 0.0, 1.0, 2.0, 3.0, 4.0])) as meter:
        while True:
            steps += 1
            reading = meter.read()
            if reading.joules > budget_j:
                break
    assert steps == 3 and reading.joules == pytest.approx(3 * PER_CPU_S)
    assert (reading.joules_low, reading.joules_high) == pytest.approx((3 * LOW_PER_CPU_S, 3 * HIGH_PER_CPU_S))


# ------------------------------------------------------------------------------------------
# decorator
def test_decorator_meters_each_call_and_keeps_the_last(rapl, tmp_path):
    log = tmp_path / "log.csv"

    @measure_energy(label="burn", nvml=False, powercap_root=rapl, pue=1.0, log=log)
    def burn(joules: float) -> str:
        """Burn some energy."""
        add_cpu_j(rapl, joules)
        return f"burnt {joules}"

    assert burn.last_measurement is None and burn.__doc__ == "Burn some energy." and burn.__name__ == "burn"
    assert burn(2.0) == "burnt 2.0"
    assert burn.last_measurement.joules == pytest.approx(2.0) and burn.last_measurement.name == "burn"
    assert burn(0.5) == "burnt 0.5"
    last = burn.last_measurement
    assert isinstance(last, Measurement) and last.joules == last.joules_high == pytest.approx(0.5)
    assert last.methods() == {"cpu": er.METHOD_RAPL, "dram": er.METHOD_RAPL}
    assert burn.last_record.label == "burn" and burn.last_record.energy_j == pytest.approx(0.5)
    df = read_records(log)
    assert list(df["label"]) == ["burn", "burn"] and list(df["cpu_j"]) == pytest.approx([2.0, 0.5])


def test_decorator_without_parentheses_uses_the_qualified_name(monkeypatch, tmp_path):
    monkeypatch.setenv(er.POWERCAP_ENV, str(tmp_path / "none"))

    @measure_energy
    def work():
        return 7

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown CPU's TDP warning, depending on the machine
        assert work() == 7
    assert work.last_measurement.name.endswith("work") and work.last_measurement.done


def test_decorator_passes_exceptions_and_still_records(rapl):
    @measure_energy(nvml=False, powercap_root=rapl, pue=1.0)
    def fails():
        add_cpu_j(rapl, 1.0)
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        fails()
    assert fails.last_measurement.joules == pytest.approx(1.0)
    assert "block raised ValueError" in fails.last_record.notes


def test_decorator_meters_coroutines_and_refuses_generators(rapl):
    @measure_energy(nvml=False, powercap_root=rapl, pue=1.0)
    async def job():
        add_cpu_j(rapl, 1.0)
        await asyncio.sleep(0)
        add_cpu_j(rapl, 1.0)
        return "done"

    assert asyncio.run(job()) == "done" and job.last_measurement.joules == pytest.approx(2.0)
    with pytest.raises(TypeError, match="generator function"):

        @measure_energy(nvml=False)
        def gen():
            yield 1


def test_decorator_checks_settings_at_decoration_and_warns_on_a_refused_log(rapl, tmp_path):
    with pytest.raises(ValueError, match="cpu_tdp_w"):
        measure_energy(cpu_tdp_w=-1)(lambda: None)
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n")

    @measure_energy(nvml=False, powercap_root=rapl, pue=1.0, log=foreign)
    def f():
        return 1

    with pytest.warns(RuntimeWarning, match="record not logged"):
        assert f() == 1
    assert f.last_measurement is not None and foreign.read_text() == "a,b\n"


# ------------------------------------------------------------------------------------------
# JSON
def test_record_json_round_trip(rapl):
    nvml = FakeNvml(n=1)
    with measuring(rapl, nvml, label="json") as meter:
        with meter.window("w"):
            nvml.energy_mj[0] += 10_000
            add_cpu_j(rapl, 1.0)
    record = meter.record
    data = json.loads(record.to_json())
    assert data == json.loads(json.dumps(record.to_dict()))
    assert data["schema"] == 1 and data["label"] == "json"
    assert data["energy"]["joules"] == pytest.approx(11.0)
    assert data["energy"]["joules_low"] == data["energy"]["joules_high"] == data["energy"]["joules"]
    assert {c["method"] for c in data["components"]} == {er.METHOD_NVML_ENERGY, er.METHOD_RAPL}
    assert {c["scope"] for c in data["components"]} == {"device"}
    assert data["by_kind"]["gpu"]["joules"] == pytest.approx(10.0)
    assert data["hardware"]["gpus"] == ["gpu:0 NVIDIA A100-SXM4-40GB"]
    assert data["hardware"]["cpu_tdp_w"] is None  # NaN (the CPU is measured) is null, never a bare NaN
    assert data["pue"]["value"] == 1.0 and data["intensity"]["code"]
    assert data["provenance"]["tool_version"] == waveflow.__version__
    assert data["sections"][0]["label"] == "w" and data["sections"][0]["joules"] == pytest.approx(11.0)
    assert json.loads(json.dumps(Measurement.from_record(record).to_dict()))["joules"] == pytest.approx(11.0)


def test_cli_json_prints_the_record_after_the_commands_output(capfd):
    code = "print('the command speaks first')"
    rc = cli_main(["energy", "--no-log", "--json", "--cpu-tdp", "100", "--", sys.executable, "-c", code])
    assert rc == 0
    out, err = capfd.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == "the command speaks first" and len(lines) == 2
    data = json.loads(lines[-1])
    assert data["exit_code"] == 0 and data["command"].startswith(sys.executable)
    assert data["components"][0]["method"] == er.METHOD_TDP_PER_THREAD
    assert data["energy"]["joules_low"] <= data["energy"]["joules"] <= data["energy"]["joules_high"]
    assert data["provenance"]["tool_version"] == waveflow.__version__
    assert "energy of" in err  # the human summary stays on stderr


# ------------------------------------------------------------------------------------------
# provenance
def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a throwaway identity, ignoring the user's global configuration."""
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def fresh_commit_cache():
    pv.project_commit.cache_clear()
    yield
    pv.project_commit.cache_clear()


def test_record_carries_the_working_directorys_commit(tmp_path, monkeypatch, fresh_commit_cache):
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print(1)\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)
    record = estimating(cpu_clock([0.0])).start().stop()
    assert record.project_commit == head and record.tool_version == waveflow.__version__
    assert record.row()["project_commit"] == head and record.row()["tool_version"] == waveflow.__version__
    assert f"project commit {head}" in waveflow.energy.summary(record)

    (repo / "train.py").write_text("print(2)\n")
    pv.project_commit.cache_clear()
    assert estimating(cpu_clock([0.0])).start().stop().project_commit == f"{head}-dirty"


def test_project_commit_is_empty_outside_a_repository_and_without_git(tmp_path, monkeypatch, fresh_commit_cache):
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above tmp_path
    monkeypatch.chdir(outside)
    assert estimating(cpu_clock([0.0])).start().stop().project_commit == ""
    pv.project_commit.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert pv.project_commit() == ""


def test_tool_version_is_the_packages():
    assert pv.tool_version() == waveflow.__version__
    assert EnergyRecord("x", "", 0.0, [], "", math.nan, "", math.nan, 1.0, "", "", "", 0.0, "").tool_version


def test_the_new_columns_reach_the_log(tmp_path):
    record = estimating(cpu_clock([0.0])).start().stop()
    df = read_records(append_record(record, tmp_path / "log.csv"))
    assert list(df.columns) == list(RECORD_COLUMNS)
    assert df["tool_version"].iloc[0] == waveflow.__version__
    assert df["project_commit"].iloc[0] == record.project_commit


# ------------------------------------------------------------------------------------------
# the public face
PUBLIC = [
    "CarbontrackerResult",
    "CarbontrackerSession",
    "ComponentEnergy",
    "DEFAULT_LOG",
    "EnergyMeter",
    "EnergyReader",
    "EnergyRecord",
    "Interval",
    "J_PER_KWH",
    "J_PER_WH",
    "Measurement",
    "RECORD_COLUMNS",
    "append_record",
    "measure_energy",
    "read_records",
    "summary",
]


def _documented_constant(name: str) -> bool:
    """Whether a module of ``waveflow.energy`` assigns ``name`` at top level under a ``#:`` comment."""
    for path in Path(waveflow.energy.__file__).parent.glob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
            if named and lines[node.lineno - 2].lstrip().startswith("#:"):
                return True
    return False


def test_the_public_face_is_pinned_and_documented():
    assert sorted(waveflow.energy.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        obj = getattr(waveflow.energy, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
            assert doc and doc.strip(), f"waveflow.energy.{name} has no docstring"
        else:
            assert _documented_constant(name), f"waveflow.energy.{name} has no #: comment saying what it is for"


def test_the_face_stays_light():
    code = "import sys, waveflow.energy; print([m for m in ('torch', 'pandas', 'numpy') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
