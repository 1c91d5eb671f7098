"""The paper's TDP × time estimate held against every measured component, on fake NVML, RAPL and wall meters."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import replace

import pytest
from test_energy import FakeNvml, cpu_clock, make_powercap, set_uj
from test_energy_wall import around_now

from waveflow.energy import EnergyMeter, summary
from waveflow.energy import readers as er
from waveflow.energy.hardware import SING_MEASURED_KWH, estimate_training_energy
from waveflow.energy.tdp_check import TdpCheck, tdp_checks

V100 = "Tesla V100-SXM2-16GB"


@pytest.fixture(autouse=True)
def fixed_machine(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(er.POWERCAP_ENV, raising=False)
    monkeypatch.setattr(er, "cpu_info", lambda: er.CpuInfo(4, 4, 1, 4, False))
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC 7742 64-Core Processor")  # 225 W in cpu_power.csv


class SteadyGpu(FakeNvml):
    """One GPU of a given name whose energy counter advances at a steady ``watts`` in real time."""

    def __init__(self, name: str, watts: float, limit_mw: int | None = None):
        super().__init__(n=1)
        self.name, self.watts, self.limit_mw, self.t0 = name, watts, limit_mw, time.perf_counter()

    def nvmlDeviceGetName(self, h):
        return self.name

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return 1_000_000 + self.watts * 1e3 * (time.perf_counter() - self.t0)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        if self.limit_mw is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return self.limit_mw


def gpu_record(nvml, seconds: float = 0.2):
    with EnergyMeter("gpu", nvml=nvml, cpu=False, pue=1.0) as meter:
        time.sleep(seconds)
    return meter.record


def test_the_method_recomputes_the_papers_sing_check():
    """§4.2: SING metered at 64.8 kWh against the Table 1 estimate of 52 kWh (1 x 250 W x 208 h)."""
    check = TdpCheck("gpu", "TITAN X", SING_MEASURED_KWH * 3.6e6, 208 * 3600.0, 250.0, "Table 1")
    assert check.tdp_time_j / 3.6e6 == pytest.approx(estimate_training_energy("TITAN X", 1, 208)) == 52
    assert check.ratio == pytest.approx(1.246, abs=1e-3)
    assert math.isnan(TdpCheck("gpu", "x", 1.0, 0.0, 300.0, "").ratio)  # a window of no length


def test_a_v100_drawing_150_w_is_half_what_its_300_w_tdp_says():
    rec = gpu_record(SteadyGpu(V100, watts=150.0))
    (check,) = rec.tdp_checks()
    assert (check.kind, check.device, check.tdp_w) == ("gpu", f"gpu:0 {V100}", 300.0)
    assert check.tdp_source == "gpus.csv: Tesla V100 SXM2 (16/32 GB)"
    assert check.seconds == rec.wall_s and check.tdp_time_j == pytest.approx(300.0 * rec.wall_s)
    assert check.ratio == pytest.approx(0.5, rel=0.01)
    line = next(x for x in summary(rec).splitlines() if x.strip().startswith("check gpu"))
    match = re.fullmatch(
        rf"  check gpu gpu:0 {V100}: TDP × time would say (\S+) J \(300 W from gpus.csv: Tesla V100 SXM2 "
        r"\(16/32 GB\)\); measured / that = (\S+)",
        line,
    )
    assert match, line
    assert float(match.group(1)) == pytest.approx(300.0 * rec.wall_s, rel=0.01)
    assert float(match.group(2)) == pytest.approx(0.5, rel=0.01)
    row = rec.row()
    assert row["gpu_tdp_time_j"] == pytest.approx(300.0 * rec.wall_s) and row["gpu_tdp_ratio"] == check.ratio
    assert row["cpu_tdp_time_j"] == row["cpu_tdp_ratio"] == row["wall_tdp_ratio"] == ""


def test_a_gpu_missing_from_the_table_falls_back_to_nvmls_enforced_limit():
    rec = gpu_record(SteadyGpu("NVIDIA Frobnicator 9000", watts=90.0, limit_mw=450_000))
    (check,) = rec.tdp_checks()
    assert check.tdp_w == 450.0 and check.tdp_source.startswith("NVML enforced power limit")
    assert "'NVIDIA Frobnicator 9000' is not in gpus.csv" in check.tdp_source
    assert check.ratio == pytest.approx(0.2, rel=0.01)


def test_the_table_tdp_wins_and_a_different_enforced_limit_is_said_beside_it():
    rec = gpu_record(SteadyGpu("NVIDIA A100-SXM4-40GB", watts=100.0, limit_mw=300_000))
    (check,) = rec.tdp_checks()
    assert check.tdp_w == 400.0 and check.tdp_source == "gpus.csv: A100 SXM4 (40/80 GB); NVML enforces 300 W"


def test_a_gpu_with_neither_a_table_row_nor_a_limit_gets_no_check():
    rec = gpu_record(SteadyGpu("NVIDIA Frobnicator 9000", watts=90.0))
    assert rec.joules("gpu") > 0 and rec.tdp_checks() == []
    assert rec.row()["gpu_tdp_ratio"] == "" and "TDP × time" not in summary(rec)


def test_rapl_package_is_held_against_its_tdp_and_dram_gets_none(tmp_path):
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 2**32), "intel-rapl:0:0": ("dram", 0, 2**32)})
    with EnergyMeter("rapl", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 12_500_000)
        set_uj(root, "intel-rapl:0:0", 2_000_000)
    rec = meter.record
    (check,) = rec.tdp_checks()
    assert (check.kind, check.tdp_w, check.tdp_source) == ("cpu", 225.0, "cpu_power.csv: AMD EPYC 7742")
    assert check.measured_j == pytest.approx(12.5) and check.ratio == pytest.approx(12.5 / (225.0 * rec.wall_s))
    assert rec.row()["cpu_tdp_ratio"] == check.ratio and rec.row()["cpu_tdp_time_j"] == check.tdp_time_j
    assert len([x for x in summary(rec).splitlines() if "TDP × time would say" in x]) == 1


def test_rapl_of_an_unknown_cpu_uses_the_zones_long_term_limit_and_a_user_tdp_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "Frobnicator 9000 Ultra")
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, 2**32)})
    (root / "intel-rapl:0" / "constraint_0_name").write_text("long_term\n")
    (root / "intel-rapl:0" / "constraint_0_power_limit_uw").write_text("165000000\n")
    with EnergyMeter("limit", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 3_000_000)
    (check,) = meter.record.tdp_checks()
    assert check.tdp_w == 165.0 and check.tdp_source.startswith("RAPL long-term power limit")
    with EnergyMeter("user", nvml=False, powercap_root=root, pue=1.0, cpu_tdp_w=180) as meter:
        pass
    (check,) = meter.record.tdp_checks()
    assert (check.tdp_w, check.tdp_source) == (180.0, "the user's cpu_tdp_w")
    assert any("cpu_tdp_w=180 is not used for the CPU's energy" in n for n in meter.record.notes)


def test_distinct_die_counters_of_one_package_share_its_tdp(tmp_path):
    root = make_powercap(
        tmp_path, {"intel-rapl:0": ("package-0-die-0", 0, 2**32), "intel-rapl:1": ("package-0-die-1", 0, 2**32)}
    )
    with EnergyMeter("dies", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 4_000_000)
        set_uj(root, "intel-rapl:1", 6_000_000)  # not a mirror: a second counter
    checks = meter.record.tdp_checks()
    assert [c.tdp_w for c in checks] == [112.5, 112.5]
    assert all(c.tdp_source.endswith("shared by 2 die counters") for c in checks)


def test_a_wall_meter_is_held_against_the_whole_machines_tdps(tmp_path):
    log = around_now(tmp_path, watts=250.0)
    nvml = SteadyGpu("NVIDIA A100-SXM4-40GB", watts=100.0)
    with EnergyMeter("plug", nvml=nvml, powercap_root="/nonexistent", cpu_tdp_w=100, pue=1.0, wall_meter=log) as m:
        time.sleep(0.05)
    rec = m.record
    checks = {c.kind: c for c in rec.tdp_checks()}
    assert set(checks) == {"gpu", "wall"}  # the estimated CPU gets none
    wall = checks["wall"]
    assert (
        wall.tdp_w == 500.0 and wall.tdp_source == "1 GPU TDP(s) 400 W + 1 x CPU package 100 W (the user's cpu_tdp_w)"
    )
    assert wall.ratio == pytest.approx(0.5, rel=0.01) and rec.row()["wall_tdp_ratio"] == wall.ratio


def test_a_record_without_a_measured_component_gets_no_check():
    with EnergyMeter("vm", nvml=False, powercap_root="/nonexistent", cpu_tdp_w=100, pue=1.0) as meter:
        pass
    rec = meter.record
    assert rec.components and rec.components[0].estimated and rec.tdp_checks() == []
    assert "TDP × time" not in summary(rec) and rec.to_dict()["tdp_time_checks"] == []
    assert all(rec.row()[f"{k}_tdp_ratio"] == "" for k in ("gpu", "cpu", "wall"))


def test_json_carries_the_checks_and_the_components_tdp(tmp_path):
    rec = gpu_record(SteadyGpu(V100, watts=150.0), seconds=0.05)
    data = json.loads(rec.to_json())
    (check,) = data["tdp_time_checks"]
    assert check["tdp_w"] == 300.0 and check["tdp_source"].startswith("gpus.csv")
    assert check["tdp_time_joules"] == pytest.approx(300.0 * rec.wall_s) and check["ratio"] == pytest.approx(
        0.5, rel=0.02
    )
    assert check["measured_joules"] == pytest.approx(rec.joules("gpu")) and check["seconds"] == rec.wall_s
    assert data["components"][0]["tdp_w"] == 300.0


def test_checks_follow_the_components_through_a_copy_and_skip_estimates():
    """A component renamed for a merged run keeps its TDP; an estimate never gets a check."""
    rec = gpu_record(SteadyGpu(V100, watts=150.0), seconds=0.05)
    renamed = replace(rec.components[0], device="gpu:0 V100 [node 1, rank 2]")
    (check,) = tdp_checks([renamed], 10.0)
    assert check.device.endswith("[node 1, rank 2]") and check.tdp_time_j == 3000.0
    estimate = replace(renamed, method=er.METHOD_TDP_UTIL, low=1.0, high=2.0)
    assert tdp_checks([estimate], 10.0) == []
    meter = EnergyMeter("x", nvml=False, powercap_root="/nonexistent", cpu_seconds=cpu_clock([0.0]))
    (cpu,) = meter.start().stop().components
    assert cpu.estimated and math.isnan(cpu.tdp_w) and cpu.tdp_source == ""
