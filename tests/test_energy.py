"""Energy meter: each reader on fakes of the real interfaces, the estimate maths, the log, the CLI."""

from __future__ import annotations

import csv
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from waveflow.cli import main as cli_main
from waveflow.energy import RECORD_COLUMNS, EnergyMeter, append_record, read_records, summary
from waveflow.energy import readers as er


# ------------------------------------------------------------------------------------------
# fakes
def make_powercap(root: Path, domains: dict[str, tuple[str, int, int]]) -> Path:
    """A powercap tree: {dir: (name, energy_uj, max_energy_range_uj)}, as /sys/class/powercap lays it out."""
    for d, (name, uj, max_uj) in domains.items():
        (root / d).mkdir(parents=True)
        (root / d / "name").write_text(name + "\n")
        (root / d / "energy_uj").write_text(f"{uj}\n")
        (root / d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return root


def set_uj(root: Path, d: str, uj: int) -> None:
    (root / d / "energy_uj").write_text(f"{uj}\n")


class FakeNvml:
    """The subset of pynvml the meter uses; energy in mJ, power in mW, like the real library."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self, n: int = 2, counter: bool = True, power_mw: int = 200_000, init_error: bool = False):
        self.n, self.counter, self.power_mw, self.init_error = n, counter, power_mw, init_error
        self.energy_mj = [1_000_000 * (i + 1) for i in range(n)]
        self.power_calls = 0
        self.shutdown_called = False

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        self.shutdown_called = True

    def nvmlDeviceGetCount(self):
        return self.n

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return b"TITAN X (Pascal)" if not self.counter else "NVIDIA A100-SXM4-40GB"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.counter:
            raise self.NVMLError_NotSupported("Not Supported")
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h):
        self.power_calls += 1
        return self.power_mw


def cpu_clock(values):
    """cpu_seconds callable returning successive values (the last one repeats)."""
    it = iter(values)
    last = [0.0]

    def f():
        last[0] = next(it, last[0])
        return last[0]

    return f


@pytest.fixture(autouse=True)
def no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(er.POWERCAP_ENV, raising=False)


@pytest.fixture(autouse=True)
def bare_metal(monkeypatch):
    """A bare-metal box with one 4-thread package, whatever machine runs the tests (the package rule)."""
    monkeypatch.setattr(er, "cpu_info", lambda: er.CpuInfo(4, 4, 1, 4, False))


# ------------------------------------------------------------------------------------------
# RAPL
def test_rapl_package_and_dram_are_measured_and_core_psys_excluded(tmp_path):
    root = make_powercap(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", 1_000_000, 2**32),
            "intel-rapl:0:0": ("core", 500_000, 2**32),
            "intel-rapl:0:1": ("dram", 2_000_000, 2**32),
            "intel-rapl:1": ("psys", 9_000_000, 2**32),
        },
    )
    with EnergyMeter("rapl", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 13_500_000)  # +12.5 J
        set_uj(root, "intel-rapl:0:0", 9_000_000)
        set_uj(root, "intel-rapl:0:1", 4_000_000)  # +2 J
        set_uj(root, "intel-rapl:1", 99_000_000)
    rec = meter.record
    assert rec.joules("cpu") == pytest.approx(12.5)
    assert rec.joules("dram") == pytest.approx(2.0)
    assert rec.energy_j == pytest.approx(14.5)
    assert {c.method for c in rec.components} == {er.METHOD_RAPL}
    assert not any(c.method == er.METHOD_TDP_UTIL for c in rec.components)
    assert rec.row()["dram_method"] == er.METHOD_RAPL and rec.row()["gpu_j"] == ""


def test_rapl_wraparound_uses_max_energy_range(tmp_path):
    max_uj = 262_143_328_850
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", max_uj - 1_000_000, max_uj)})
    with EnergyMeter("wrap", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 3_000_000)  # wrapped: 1 J before the top + 3 J after
    assert meter.record.joules("cpu") == pytest.approx(4.0)


def test_rapl_poll_catches_each_wrap_between_reads(tmp_path):
    """Two wraps between start and end are only right if the counter is polled in between."""
    root = make_powercap(tmp_path, {"amd-rapl:0": ("package-0", 900, 1000)})
    (dom,) = er.rapl_domains(root)
    for uj in (100, 950, 50):  # +200, +850, +100
        set_uj(root, "amd-rapl:0", uj)
        dom.poll()
    assert dom.read() == pytest.approx(1150 / 1e6)


def test_rapl_permission_denied_falls_back_to_estimate(tmp_path):
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 1, 2**32)})

    def read_text(p: Path) -> str:
        if p.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(p))
        return p.read_text()

    with EnergyMeter(
        "denied",
        nvml=False,
        powercap_root=root,
        rapl_read_text=read_text,
        cpu_tdp_w=100,
        cpu_seconds=cpu_clock([0.0, 1.0]),
        pue=1.0,
    ) as meter:
        pass
    rec = meter.record
    assert [c.method for c in rec.components] == [er.METHOD_TDP_UTIL]
    assert any("RAPL unreadable (PermissionError" in n for n in rec.notes)
    assert rec.cpu_tdp_w == 100 and rec.cpu_tdp_match == "override"


# ------------------------------------------------------------------------------------------
# NVML
def test_nvml_energy_counter_per_device():
    nvml = FakeNvml(n=2, counter=True)
    with EnergyMeter("gpu", nvml=nvml, cpu=False, pue=1.0) as meter:
        nvml.energy_mj[0] += 150_000  # 150 J
        nvml.energy_mj[1] += 2_500  # 2.5 J
    rec = meter.record
    gpus = [c for c in rec.components if c.kind == "gpu"]
    assert [c.joules for c in gpus] == pytest.approx([150.0, 2.5])
    assert [c.method for c in gpus] == [er.METHOD_NVML_ENERGY] * 2
    assert gpus[0].device == "gpu:0 NVIDIA A100-SXM4-40GB"
    assert nvml.power_calls == 0 and nvml.shutdown_called
    assert rec.row()["gpu_j"] == pytest.approx(152.5)


def test_nvml_power_polling_when_counter_not_supported():
    nvml = FakeNvml(n=1, counter=False, power_mw=250_000)
    with EnergyMeter("old gpu", nvml=nvml, cpu=False, pue=1.0, poll_hz=20) as meter:
        time.sleep(0.3)
    rec = meter.record
    (gpu,) = rec.components
    assert gpu.method == er.METHOD_NVML_POWER and gpu.device == "gpu:0 TITAN X (Pascal)"
    assert gpu.joules == pytest.approx(250.0 * rec.wall_s, rel=0.05)
    assert nvml.power_calls >= 4  # ~20 Hz for 0.3 s (6 calls), not just the two end points
    assert any("no NVML energy counter" in n for n in rec.notes)
    assert not any(t.name == "EnergyMeterPoll" for t in threading.enumerate())


def test_nvml_init_failure_is_a_note_not_a_crash():
    with EnergyMeter("no driver", nvml=FakeNvml(init_error=True), cpu=False, pue=1.0) as meter:
        pass
    assert meter.record.components == []
    assert any("NVML unavailable (NVMLError" in n for n in meter.record.notes)


def test_cuda_visible_devices_selects_nvml_indices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with EnergyMeter("one", nvml=FakeNvml(n=2), cpu=False, pue=1.0) as meter:
        pass
    assert [c.device.split()[0] for c in meter.record.components] == ["gpu:1"]


def test_reader_failure_mid_run_is_recorded_not_raised():
    nvml = FakeNvml(n=1)
    with EnergyMeter("flaky", nvml=nvml, cpu=False, pue=1.0) as meter:
        nvml.energy_mj[0] += 1000
        meter.mark("ok")
        nvml.counter = False  # the next read raises NotSupported
    rec = meter.record
    assert rec.components[0].joules == pytest.approx(1.0)
    assert any("read failed" in n and "lower bound" in n for n in rec.notes)


# ------------------------------------------------------------------------------------------
# CPU estimate
def test_utilisation_estimate_maths():
    tdp = er.CpuTdp("X", 100.0, "override", "", "")
    est = er.CpuUtilisationEstimate(tdp, cpu_seconds=cpu_clock([10.0, 13.0]), logical_cpus=4, packages=1)
    # 3 CPU s over 4 logical CPUs = 0.75 package-seconds at 100 W.
    assert est.read() == pytest.approx(75.0)
    assert est.utilisation(wall_s=1.5) == pytest.approx(3.0 / (1.5 * 4))
    two = er.CpuUtilisationEstimate(tdp, cpu_seconds=cpu_clock([0.0, 8.0]), logical_cpus=8, packages=2)
    assert two.read() == pytest.approx(200.0)  # 8 CPU s = 1 s of both packages at full load


def spin_cpu(cpu_s: float) -> None:
    """Burn ``cpu_s`` of this thread's CPU time (not wall time: the test box may be shared)."""
    t = time.thread_time()
    while time.thread_time() - t < cpu_s:
        pass


def test_estimate_follows_real_load_not_a_constant():
    def measure(work):
        with EnergyMeter("load", nvml=False, powercap_root="/nonexistent", cpu_tdp_w=100, pue=1.0) as m:
            work()
        return m.record

    busy, idle = measure(lambda: spin_cpu(0.25)), measure(lambda: time.sleep(0.25))
    n = er.cpu_topology()[0]
    busy_cpu_s = busy.cpu_utilisation * n * busy.wall_s
    # the spin plus a little of the meter and the interpreter; /proc counts CPU time in 10 ms ticks
    assert 0.25 - 0.02 <= busy_cpu_s < 0.25 + 0.1
    assert busy.joules("cpu") == pytest.approx(100 * busy_cpu_s / n)
    assert idle.cpu_utilisation * n * idle.wall_s < 0.05
    assert busy.joules("cpu") > 5 * idle.joules("cpu")


def test_unknown_cpu_uses_table_median_and_warns(monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "Frobnicator 9000 Ultra")
    with pytest.warns(UserWarning, match=r"unknown CPU 'Frobnicator 9000 Ultra'.*cpu_tdp_w"):
        with EnergyMeter("?", nvml=False, powercap_root="/nonexistent", pue=1.0) as m:
            pass
    assert m.record.cpu_tdp_match == "default"
    assert m.record.cpu_tdp_w == statistics.median(er.cpu_power_table().values())


def test_generic_brand_is_a_family_median_not_the_first_row(monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    with pytest.warns(UserWarning, match="generic brand 'AMD EPYC'"):
        with EnergyMeter("kvm", nvml=False, powercap_root="/nonexistent", pue=1.0) as m:
            pass
    epyc = [v for k, v in er.cpu_power_table().items() if k.startswith("AMD EPYC")]
    assert m.record.cpu_tdp_match == "generic"
    assert m.record.cpu_tdp_w == statistics.median(epyc) != 120.0  # carbontracker's first row, 7232P


def test_tdp_override_does_not_warn(monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with EnergyMeter("override", nvml=False, powercap_root="/nonexistent", cpu_tdp_w=155, pue=1.0) as m:
            pass
    assert m.record.cpu_tdp_w == 155


@pytest.mark.parametrize(
    "brand,name,tdp",
    [
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "Intel Core i7-8700", 65),
        ("AMD EPYC 7742 64-Core Processor", "AMD EPYC 7742", 225),
        ("Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz", "Intel Xeon E5-2630 v4", 85),
    ],
)
def test_tdp_lookup_real_brand_strings(brand, name, tdp):
    found = er.lookup_cpu_tdp(brand)
    assert (found.matched_name, found.tdp_w, found.match) == (name, tdp, "exact")


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="cpu_tdp_w"):
        EnergyMeter(cpu_tdp_w=-5)
    with pytest.raises(ValueError, match="poll_hz"):
        EnergyMeter(poll_hz=2)
    with pytest.raises(ValueError):
        EnergyMeter(pue=0.5)


# ------------------------------------------------------------------------------------------
# record, sections, log
def test_sections_marks_pue_and_co2():
    cpu = cpu_clock([0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 6.0, 6.0])  # built, start, s1 in/out, mark, s2 in/out, stop
    with EnergyMeter(
        "epochs", nvml=False, powercap_root="/nonexistent", cpu_tdp_w=100, cpu_seconds=cpu, pue=1.5, intensity="FR"
    ) as meter:
        with meter.section("epoch 1"):
            pass
        meter.mark("after 1")
        with meter.section("epoch 2"):
            pass
    rec = meter.record
    n = er.cpu_topology()[0]
    assert [s.label for s in rec.sections] == ["epoch 1", "epoch 2"]
    assert rec.sections[0].total_j == pytest.approx(100 * 2.0 / n)
    assert rec.sections[1].total_j == pytest.approx(100 * 4.0 / n)
    assert rec.marks[0].label == "after 1" and rec.marks[0].joules["cpu"] == pytest.approx(100 * 2.0 / n)
    # sections and marks keep the method, scope and bounds of each component, like the record's total
    assert rec.sections[1].methods() == {"cpu": er.METHOD_TDP_UTIL} and rec.sections[1].scopes() == {
        "cpu": "process-tree"
    }
    low, high = rec.sections[1].joules_bounds()
    assert low == pytest.approx((1 - er.IDLE_SHARE) * rec.sections[1].total_j) and high >= rec.sections[1].total_j
    assert rec.marks[0].components[0].method == er.METHOD_TDP_UTIL
    assert rec.energy_j_pue == pytest.approx(1.5 * rec.energy_j)
    assert rec.co2e_g == pytest.approx(rec.energy_j * 1.5 / 3.6e6 * rec.intensity_g_per_kwh)
    assert rec.intensity_code == "FR" and rec.intensity_source
    assert "section 'epoch 2'" in summary(rec)


def test_block_exception_propagates_and_is_noted():
    meter = EnergyMeter("boom", nvml=False, powercap_root="/nonexistent", cpu_tdp_w=100, pue=1.0)
    with pytest.raises(KeyError):
        with meter:
            raise KeyError("x")
    assert "block raised KeyError" in meter.record.notes


def _record(label: str):
    with EnergyMeter(
        label,
        nvml=False,
        powercap_root="/nonexistent",
        cpu_tdp_w=100,
        cpu_seconds=cpu_clock([0.0, 0.0, 1.0]),  # built, start, stop
        pue=1.0,
    ) as m:
        pass
    return m.record


def test_csv_append_two_rows_one_header(tmp_path):
    log = tmp_path / "sub" / "energy_log.csv"
    append_record(_record("first"), log)
    append_record(_record("second, with comma"), log)
    lines = log.read_text().splitlines()
    assert lines[0] == ",".join(RECORD_COLUMNS)
    assert sum(line.startswith("timestamp,") for line in lines) == 1
    with open(log, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3 and all(len(r) == len(RECORD_COLUMNS) for r in rows)
    df = read_records(log)
    assert list(df.columns) == list(RECORD_COLUMNS)
    assert list(df["label"]) == ["first", "second, with comma"]
    assert df["cpu_j"].dtype.kind == "f" and (df["cpu_j"] > 0).all()


def test_csv_with_foreign_header_is_refused(tmp_path):
    log = tmp_path / "other.csv"
    log.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an energy log") as err:
        append_record(_record("x"), log)
    assert "\n" not in str(err.value) and str(log) in str(err.value)
    assert log.read_text() == "a,b\n1,2\n"


def test_log_with_the_old_header_is_refused_in_one_line_and_kept(tmp_path):
    """A log written before the bounds/scope columns existed is not appended to, mixed or overwritten."""
    old_header = (
        "timestamp,label,hostname,git_commit,command,exit_code,wall_s,gpu_j,gpu_method,gpu_devices,cpu_j,"
        "cpu_method,cpu_device,cpu_tdp_w,cpu_tdp_match,cpu_utilisation,dram_j,dram_method,energy_j,pue,pue_name,"
        "energy_j_pue,energy_kwh_pue,intensity_g_per_kwh,intensity_code,intensity_source,co2e_g,sections,notes"
    )
    log = tmp_path / "energy_log.csv"
    content = old_header + "\n2024-01-01T00:00:00+00:00,old,h,c,,,1.0,,,,5.0" + "," * 18 + "\n"
    log.write_text(content)
    with pytest.raises(ValueError) as err:
        append_record(_record("new"), log)
    message = str(err.value)
    assert "\n" not in message
    assert str(log) in message and "older column layout (29 columns" in message
    assert f"mv {log} {log}.old" in message and "--log PATH" in message
    assert log.read_text() == content
    rc = cli_main(["energy", "--log", str(log), "--cpu-tdp", "100", "--", sys.executable, "-c", "pass"])
    assert rc == 0 and log.read_text() == content  # the CLI reports it and still returns the command's code


TDP_COLUMNS = tuple(f"{k}_tdp_{x}" for k in ("gpu", "cpu", "wall") for x in ("time_j", "ratio"))


@pytest.mark.parametrize(
    "dropped",
    [TDP_COLUMNS, ("project_commit", "tool_version", *TDP_COLUMNS)],
    ids=["before the TDP x time columns", "before the provenance columns"],
)
def test_a_log_of_an_older_layout_still_loads_and_is_not_appended_to(tmp_path, dropped):
    """Layouts before ``project_commit``/``tool_version`` and before the TDP x time columns:
    read_records fills the missing columns in empty, and append_record refuses the file."""
    assert set(dropped) <= set(RECORD_COLUMNS)
    old_columns = [c for c in RECORD_COLUMNS if c not in dropped]
    row = _record("old").row()
    log = tmp_path / "energy_log.csv"
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(row)
    content = log.read_text()
    df = read_records(log)
    assert list(df.columns) == list(RECORD_COLUMNS)
    assert df["label"].iloc[0] == "old" and df["cpu_j"].iloc[0] == pytest.approx(row["cpu_j"])
    assert all(df[c].iloc[0] == "" for c in dropped if c in ("project_commit", "tool_version"))
    assert all(df[c].isna().all() for c in TDP_COLUMNS)  # numbers: NaN, not ""
    with pytest.raises(
        ValueError,
        match=rf"older column layout \({len(old_columns)} columns, this version writes {len(RECORD_COLUMNS)}\)",
    ):
        append_record(_record("new"), log)
    assert log.read_text() == content


# ------------------------------------------------------------------------------------------
# CLI
def test_cli_measures_a_command_and_returns_its_exit_code(tmp_path, capsys):
    log = tmp_path / "log.csv"
    code = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.exit(3)"
    rc = cli_main(
        [
            "energy",
            "--log",
            str(log),
            "--cpu-tdp",
            "100",
            "--pue",
            "1.2",
            "--intensity",
            "FR",
            "--label",
            "spin",
            "--",
            sys.executable,
            "-c",
            code,
        ]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "estimated:tdp×utilisation" in err and "PUE 1.2" in err and "g/kWh" in err
    row = read_records(log).iloc[0]
    assert row["label"] == "spin" and int(row["exit_code"]) == 3 and row["intensity_code"] == "FR"
    assert row["command"].startswith(sys.executable)
    # the child burnt 0.3 CPU s (+ its start-up): its tree, not this waiting process, carries the load
    child_cpu_s = row["cpu_utilisation"] * er.cpu_topology()[0] * row["wall_s"]
    assert 0.3 - 0.02 <= child_cpu_s < 1.0
    assert row["cpu_j"] == pytest.approx(100 * child_cpu_s / er.cpu_topology()[0])


def test_cli_missing_command(tmp_path, capsys):
    assert cli_main(["energy", "--no-log", "--cpu-tdp", "100", "--", "/nonexistent/binary"]) == 127
    assert cli_main(["energy", "--no-log"]) == 2


# ------------------------------------------------------------------------------------------
@pytest.mark.requires_gpu
def test_real_nvml_measures_gpu_work():
    import torch

    x = torch.randn(4096, 4096, device="cuda")
    with EnergyMeter("gpu matmul", pue=1.0, cpu_tdp_w=100) as meter:
        t = time.perf_counter()
        while time.perf_counter() - t < 1.5:
            x = torch.tanh(x @ x)
    gpus = [c for c in meter.record.components if c.kind == "gpu"]
    assert gpus, meter.record.notes
    assert {c.method for c in gpus} <= {er.METHOD_NVML_ENERGY, er.METHOD_NVML_POWER}
    watts = max(c.joules for c in gpus) / meter.record.wall_s
    assert 20 < watts < 1500, (watts, meter.record.notes)


def test_cli_prints_meter_warnings_as_plain_notes(monkeypatch, capsys):
    """A generic CPU brand is reported as one plain line, not a ``file:line`` warning into the package."""
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    assert cli_main(["energy", "--no-log", "--", sys.executable, "-c", "pass"]) == 0
    err = capsys.readouterr().err
    assert "waveflow energy: note: EnergyMeter: generic brand 'AMD EPYC'" in err
    assert "UserWarning" not in err and ".py:" not in err


def test_meter_warning_points_at_the_callers_line(monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    with pytest.warns(UserWarning, match="generic brand") as caught:
        EnergyMeter("x", nvml=False).start().stop()
    assert caught[0].filename == __file__


def test_warn_false_keeps_the_advice_in_the_notes_only(monkeypatch, recwarn):
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    record = EnergyMeter("x", nvml=False, warn=False).start().stop()
    assert not [w for w in recwarn if "generic brand" in str(w.message)]
    assert any("--cpu-tdp" in n for n in record.notes)
