"""RAPL on fake powercap trees: mirrored dies counted once, real sockets summed, wraps, unreadable counters."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_energy import make_powercap, set_uj

from waveflow.energy import EnergyMeter
from waveflow.energy import readers as er

MAX = 2**32


@pytest.fixture(autouse=True)
def fixed_machine(monkeypatch):
    monkeypatch.delenv(er.POWERCAP_ENV, raising=False)
    monkeypatch.setattr(er, "cpu_info", lambda: er.CpuInfo(4, 4, 1, 4, False))


def test_mirrored_die_zones_are_counted_once(tmp_path):
    """One package counter exposed as two package-0-die-N zones: 1x the energy, not 2x."""
    root = make_powercap(
        tmp_path,
        {
            "intel-rapl:0": ("package-0-die-0", 5_000_000, MAX),
            "intel-rapl:1": ("package-0-die-1", 5_000_000, MAX),
        },
    )
    with EnergyMeter("mirrored", nvml=False, powercap_root=root, pue=1.0) as meter:
        with meter.section("half"):
            set_uj(root, "intel-rapl:0", 11_000_000)  # +6 J
            set_uj(root, "intel-rapl:1", 11_000_000)
        set_uj(root, "intel-rapl:0", 17_500_000)  # +6.5 J more
        set_uj(root, "intel-rapl:1", 17_500_000)
    rec = meter.record
    assert rec.joules("cpu") == pytest.approx(12.5)
    assert [c.device for c in rec.components] == ["package-0-die-0 (intel-rapl:0)"]
    assert rec.sections[0].joules["cpu"] == pytest.approx(6.0)  # sections count the mirror once too
    assert any("package-0-die-1 (intel-rapl:1)" in n and "counted once" in n for n in rec.notes)
    assert rec.row()["cpu_scope"] == "device" and rec.row()["cpu_j_low"] == ""


def test_two_real_sockets_are_summed(tmp_path):
    root = make_powercap(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", 1_000_000, MAX),
            "intel-rapl:1": ("package-1", 3_000_000, MAX),
            "intel-rapl:0:0": ("dram", 0, MAX),
        },
    )
    with EnergyMeter("sockets", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 13_500_000)  # +12.5 J
        set_uj(root, "intel-rapl:1", 10_000_000)  # +7 J
        set_uj(root, "intel-rapl:0:0", 500_000)  # +0.5 J
    rec = meter.record
    assert rec.joules("cpu") == pytest.approx(19.5) and rec.joules("dram") == pytest.approx(0.5)
    assert len([c for c in rec.components if c.kind == "cpu"]) == 2
    assert not any("counted once" in n for n in rec.notes)


def test_a_socket_that_wraps_is_still_summed_not_taken_for_a_mirror(tmp_path):
    root = make_powercap(
        tmp_path,
        {
            "intel-rapl:0": ("package-0", MAX - 2_000_000, MAX),
            "intel-rapl:1": ("package-1", 0, MAX),
        },
    )
    with EnergyMeter("wrap", nvml=False, powercap_root=root, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 1_000_000)  # wrapped: 2 J before the top + 1 J after
        set_uj(root, "intel-rapl:1", 3_000_010)  # 3.00001 J: 10 µJ away from socket 0, above the tolerance
    assert meter.record.joules("cpu") == pytest.approx(6.00001)


@pytest.mark.parametrize(
    "error, name",
    [
        (PermissionError(13, "Permission denied"), "PermissionError"),
        (OSError(5, "Input/output error"), "OSError"),
        (None, "ValueError"),  # energy_uj holds text that is not a number
    ],
)
def test_unreadable_energy_uj_falls_back_to_the_estimate_with_a_note(tmp_path, error, name):
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 1, MAX), "intel-rapl:0:0": ("dram", 1, MAX)})
    if error is None:
        (root / "intel-rapl:0" / "energy_uj").write_text("n/a\n")

    def read_text(p: Path) -> str:
        if error is not None and p.name == "energy_uj":
            raise error
        return p.read_text()

    with EnergyMeter(
        "unreadable", nvml=False, powercap_root=root, rapl_read_text=read_text, cpu_tdp_w=100, pue=1.0
    ) as meter:
        pass
    rec = meter.record
    assert [c.method for c in rec.components] == [er.METHOD_TDP_UTIL]
    assert any(f"RAPL unreadable ({name}" in n and "DRAM not measured" in n for n in rec.notes)


def test_powercap_root_comes_from_the_environment(tmp_path, monkeypatch):
    root = make_powercap(tmp_path / "mounted", {"intel-rapl:0": ("package-0", 0, MAX)})
    monkeypatch.setenv(er.POWERCAP_ENV, str(root))
    assert er.powercap_root() == root and er.powercap_root("/elsewhere") == Path("/elsewhere")
    with EnergyMeter("env", nvml=False, pue=1.0) as meter:
        set_uj(root, "intel-rapl:0", 2_000_000)
    assert meter.record.joules("cpu") == pytest.approx(2.0)
    assert meter.record.method("cpu") == er.METHOD_RAPL
    monkeypatch.setenv(er.POWERCAP_ENV, str(tmp_path / "missing"))
    with EnergyMeter("missing", nvml=False, pue=1.0, cpu_tdp_w=100) as meter:
        pass
    assert any(f"no RAPL domains under {tmp_path / 'missing'}" in n for n in meter.record.notes)


def test_mirror_tolerance_is_a_few_microjoules():
    assert er.mirrored_zones({"a": 1000.0, "b": 1005.0}) == {"b": "a"}
    assert er.mirrored_zones({"a": 1000.0, "b": 1006.0}) == {}
    assert er.mirrored_zones({"a": 0.0, "b": 0.0}) == {}  # no energy: no evidence of a shared counter
    assert er.mirrored_zones({"d0": 7.0, "d1": 7.0, "d2": 7.0, "s1": 500.0}) == {"d1": "d0", "d2": "d0"}
