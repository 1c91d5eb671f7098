"""The CPU estimate: per hardware thread on VMs, package rule on bare metal, bounds, scope, tables."""

from __future__ import annotations

import re
import statistics
import sys

import pytest
from test_energy import cpu_clock

from waveflow.cli import main as cli_main
from waveflow.energy import EnergyMeter, read_records, summary
from waveflow.energy import cpu_tdp as ct
from waveflow.energy import readers as er
from waveflow.energy.cpu_isa import model_isa, narrow_family

VM = er.CpuInfo(logical=2, visible=2, packages=1, threads_per_package=2, hypervisor=True)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(er.POWERCAP_ENV, raising=False)


def on(monkeypatch, info: er.CpuInfo, brand: str) -> None:
    monkeypatch.setattr(er, "cpu_info", lambda: info)
    monkeypatch.setattr(er, "cpu_brand", lambda: brand)


def meter_cpu(cpu_s: float, **kwargs):
    """Record of a block whose process tree used ``cpu_s`` CPU seconds (built, start, stop readings)."""
    clock = cpu_clock([0.0, 0.0, cpu_s])
    with EnergyMeter("x", nvml=False, powercap_root="/nonexistent", pue=1.0, cpu_seconds=clock, **kwargs) as m:
        pass
    return m.record


def test_vm_known_model_is_charged_per_hardware_thread_with_bounds(monkeypatch):
    on(monkeypatch, VM, "AMD EPYC 7742 64-Core Processor")  # 225 W, 64 cores / 128 threads
    rec = meter_cpu(10.0)
    (cpu,) = rec.components
    assert (cpu.method, cpu.scope) == (er.METHOD_TDP_PER_THREAD, "process-tree")
    assert cpu.joules == pytest.approx(225 / 128 * 10)  # middle: TDP per thread x busy thread-seconds
    assert cpu.low == pytest.approx((1 - ct.IDLE_SHARE) * 225 / 128 * 10)  # without the idle share
    assert cpu.high == pytest.approx(225 * 10 / 2)  # the whole package over the 2 visible vCPUs
    row = rec.row()
    assert (row["cpu_j_low"], row["cpu_j"], row["cpu_j_high"]) == (cpu.low, cpu.joules, cpu.high)
    assert row["cpu_scope"] == "process-tree" and row["cpu_threads"] == 128
    assert row["cpu_w_per_thread"] == pytest.approx(225 / 128)
    assert row["energy_j_low"] == cpu.low and row["energy_j_high"] == cpu.high
    assert row["gpu_j_low"] == row["gpu_j_high"] == ""  # not measured: empty, not 0
    assert any("per hardware thread (virtual machine)" in n and "128 threads" in n for n in rec.notes)


def test_vm_bare_brand_uses_the_family_median_per_thread_and_states_the_spread(monkeypatch):
    on(monkeypatch, VM, "AMD EPYC")
    with pytest.warns(UserWarning, match="generic brand 'AMD EPYC'"):
        rec = meter_cpu(4.0)
    (cpu,) = rec.components
    table, threads = ct.cpu_power_table(), ct.cpu_threads_table()
    per_thread = [table[n] / threads[n][1] for n in threads if n.startswith("AMD EPYC")]
    epyc_tdps = [v for k, v in table.items() if k.startswith("AMD EPYC")]
    assert cpu.joules == pytest.approx(statistics.median(per_thread) * 4.0)
    assert cpu.low == pytest.approx((1 - ct.IDLE_SHARE) * min(per_thread) * 4.0)
    assert cpu.high == pytest.approx(statistics.median(epyc_tdps) * 4.0 / 2)  # family-median TDP, whole package
    assert cpu.low < cpu.joules < cpu.high
    note = next(n for n in rec.notes if "per hardware thread" in n)
    assert "spread" in note and f"{min(epyc_tdps):g}-{max(epyc_tdps):g} W" in note  # the TDP spread of the family


def test_vm_model_without_a_thread_count_uses_codecarbons_default(monkeypatch):
    name = "Intel Core i5-6500"  # in the TDP table, not in cpu_threads.csv
    assert name in ct.cpu_power_table() and name not in ct.cpu_threads_table()
    on(monkeypatch, VM, "Intel(R) Core(TM) i5-6500 CPU @ 3.20GHz")
    rec = meter_cpu(2.0)
    assert rec.components[0].joules == pytest.approx(ct.DEFAULT_W_PER_THREAD * 2.0)
    assert ct.DEFAULT_W_PER_THREAD == 4.0 and "CodeCarbon" in ct.DEFAULT_W_PER_THREAD_SOURCE
    assert any("codecarbon/core/cpu.py" in n for n in rec.notes)


def test_per_thread_figure_never_exceeds_the_whole_package(monkeypatch):
    # 32 visible vCPUs of an unknown CPU: the table median TDP over 32 CPUs is below 4 W per thread.
    on(monkeypatch, er.CpuInfo(32, 32, 1, 32, True), "Frobnicator 9000 Ultra")
    with pytest.warns(UserWarning, match="unknown CPU"):
        rec = meter_cpu(8.0)
    (cpu,) = rec.components
    package_w = statistics.median(ct.cpu_power_table().values()) / 32
    assert package_w < ct.DEFAULT_W_PER_THREAD
    assert cpu.joules == pytest.approx(package_w * 8.0) == pytest.approx(cpu.high)
    assert cpu.low <= cpu.joules and any("capped" in n for n in rec.notes)


def test_bare_metal_whole_package_keeps_the_package_rule(monkeypatch):
    on(monkeypatch, er.CpuInfo(16, 16, 1, 16, False), "AMD EPYC 7302 16-Core Processor")  # 155 W
    rec = meter_cpu(8.0)
    (cpu,) = rec.components
    assert cpu.method == er.METHOD_TDP_UTIL and cpu.scope == "process-tree"
    assert cpu.joules == pytest.approx(155 * 8.0 / 16) == pytest.approx(cpu.high)
    assert cpu.low == pytest.approx((1 - ct.IDLE_SHARE) * cpu.joules)


def test_bare_metal_cpuset_slice_is_charged_per_thread_from_proc_siblings(monkeypatch):
    # A container pinned to 4 of a 64-thread package: the package rule would charge 4 CPUs 155 W.
    on(monkeypatch, er.CpuInfo(64, 4, 1, 64, False), "AMD EPYC 7302 16-Core Processor")
    rec = meter_cpu(4.0)
    (cpu,) = rec.components
    assert cpu.method == er.METHOD_TDP_PER_THREAD
    assert cpu.joules == pytest.approx(155 / 64 * 4.0) and cpu.high == pytest.approx(155 / 4 * 4.0)
    assert any("4 of 64 threads" in n and "/proc/cpuinfo siblings" in n for n in rec.notes)


def test_user_thread_count_and_tdp_overrides(monkeypatch):
    on(monkeypatch, VM, "AMD EPYC")
    rec = meter_cpu(3.0, cpu_tdp_w=180, cpu_threads=96)
    assert rec.components[0].joules == pytest.approx(180 / 96 * 3.0)
    assert rec.cpu_tdp_match == "override" and rec.cpu_threads == 96
    rec = meter_cpu(3.0, cpu_tdp_w=180)  # user TDP, bare brand: the family's median thread count
    typical = statistics.median(t for n, (_, t, _) in ct.cpu_threads_table().items() if n.startswith("AMD EPYC"))
    assert rec.components[0].joules == pytest.approx(180 / typical * 3.0)
    with pytest.raises(ValueError, match="cpu_threads"):
        EnergyMeter(cpu_threads=0)


def test_done_when_a_vm_run_prints_the_per_thread_interval_and_scope(monkeypatch, tmp_path, capsys):
    """The issue's check: ``energy -- python -c "sum(range(3*10**7))"`` on a VM."""
    on(monkeypatch, VM, "AMD EPYC")
    log = tmp_path / "log.csv"
    rc = cli_main(["energy", "--log", str(log), "--", sys.executable, "-c", "sum(range(3*10**7))"])
    assert rc == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.strip().startswith("cpu "))
    assert re.match(
        r"\s+cpu\s+[\d.e+-]+ J\s+\[[\d.e+-]+, [\d.e+-]+\]\s+estimated:tdp-per-thread×utilisation\s+process-tree\s",
        line,
    ), line
    assert "W per busy hardware thread" in err
    row = read_records(log).iloc[0]
    assert row.cpu_j_low < row.cpu_j < row.cpu_j_high and row.cpu_scope == "process-tree"
    assert row.cpu_method == er.METHOD_TDP_PER_THREAD


def test_summary_shows_measured_components_without_interval(monkeypatch):
    on(monkeypatch, VM, "AMD EPYC 7742")
    rec = meter_cpu(1.0)
    text = summary(rec)
    assert "[" in next(x for x in text.splitlines() if x.strip().startswith("cpu"))
    assert re.search(r"total \S+ J \[\S+, \S+\] \(process-tree\)", text)


# ------------------------------------------------------------------------------------------
# the tables
def test_vendored_tdp_table_is_read_without_carbontracker(monkeypatch):
    monkeypatch.setitem(sys.modules, "carbontracker", None)  # any import of it would now fail
    ct.cpu_power_table.cache_clear()
    try:
        table = ct.cpu_power_table()
        assert len(table) > 4900 and ct.CPU_POWER_CSV.parent.name == "hardware"
        assert ct.lookup_cpu_tdp("AMD EPYC 7742 64-Core Processor").tdp_w == 225
    finally:
        ct.cpu_power_table.cache_clear()
    assert (ct.CPU_POWER_CSV.parent / "cpu_power.LICENSE").read_text().startswith("MIT License")


def test_thread_table_rows_match_the_tdp_table_and_are_plausible():
    table, threads = ct.cpu_power_table(), ct.cpu_threads_table()
    assert len(threads) >= 200
    assert set(threads) <= set(table)
    assert all(0 < c <= t <= 2 * c and src for c, t, src in threads.values())
    for family in ("AMD EPYC 7", "AMD EPYC 9", "Intel Xeon Gold", "Intel Xeon Platinum", "Intel Xeon E5"):
        assert sum(n.startswith(family) for n in threads) >= 5, family
    assert threads["AMD EPYC 7763"][:2] == (64, 128) and threads["Intel Xeon Platinum 8259CL"][:2] == (24, 48)


def test_bad_thread_table_row_names_the_line(tmp_path):
    path = tmp_path / "threads.csv"
    path.write_text("name,cores,threads,source\nAMD EPYC 7742,64,128,x\nBroken,8,32,x\n")
    with pytest.raises(ValueError, match=r"line 3 \('Broken'\).*cores <= threads <= 2 x cores"):
        ct.cpu_threads_table(path)


# ------------------------------------------------------------------------------------------
# a bare brand narrowed to the generations the CPU's flags allow
CPUINFO = """processor\t: {n}
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
physical id\t: 0
siblings\t: 2
flags\t\t: fpu sse2 {isa} hypervisor

"""


def fake_cpuinfo(monkeypatch, tmp_path, isa: str) -> er.CpuInfo:
    """This machine's :class:`CpuInfo` read from a 2-vCPU KVM ``/proc/cpuinfo`` with the flags ``isa``."""
    path = tmp_path / "cpuinfo"
    path.write_text("".join(CPUINFO.format(n=n, isa=isa) for n in range(2)))
    monkeypatch.setattr(er, "CPUINFO_PATH", str(path))
    info = er.cpu_info.__wrapped__()  # the uncached reader, on the fake file
    monkeypatch.setattr(er, "cpu_info", lambda: info)
    brand = er.cpu_brand.__wrapped__()
    monkeypatch.setattr(er, "cpu_brand", lambda: brand)
    return info


def epyc_per_thread(generations: set[int]) -> list[float]:
    """TDP per thread of the EPYC rows of cpu_threads.csv whose model number's 4th character is a generation."""
    table, threads = ct.cpu_power_table(), ct.cpu_threads_table()
    return [
        table[n] / t
        for n, (_, t, _) in threads.items()
        if n.startswith("AMD EPYC ") and int(n.split()[-1][3]) in generations
    ]


def test_fake_proc_cpuinfo_gives_the_flags_and_the_brand(monkeypatch, tmp_path):
    info = fake_cpuinfo(monkeypatch, tmp_path, "avx avx2 fma")
    assert info.hypervisor and info.threads_per_package == 2 and info.packages == 1
    assert {"avx2", "fma", "hypervisor"} <= info.flags and "avx512f" not in info.flags
    assert er.cpu_brand() == "AMD EPYC"


def test_avx2_only_epyc_vm_takes_its_bounds_from_zen_1_to_3(monkeypatch, tmp_path):
    fake_cpuinfo(monkeypatch, tmp_path, "avx avx2 fma")
    with pytest.warns(UserWarning, match="fit the CPU's flags"):
        rec = meter_cpu(4.0)
    (cpu,) = rec.components
    zen123 = epyc_per_thread({1, 2, 3})
    assert cpu.joules == pytest.approx(statistics.median(zen123) * 4.0)  # 3.75 W per thread
    assert cpu.low == pytest.approx((1 - ct.IDLE_SHARE) * min(zen123) * 4.0)  # 1.41 W, not the EPYC 9965's 1.17 W
    tdp = er.lookup_cpu_tdp("AMD EPYC", flags=er.cpu_info().flags)
    assert tdp.family and all(int(n.split()[-1][3]) <= 3 for n in tdp.family)
    assert rec.cpu_tdp_w == statistics.median(ct.cpu_power_table()[n] for n in tdp.family)
    assert cpu.high == pytest.approx(rec.cpu_tdp_w * 4.0 / 2)
    note = next(n for n in rec.notes if n.startswith("CPU family narrowed"))
    assert "avx2 without avx512f" in note and f"{len(tdp.family)} of the family's" in note
    assert f"{len(zen123)} of its " in note  # the models with a thread count that remain


def test_avx512_epyc_vm_takes_its_bounds_from_zen_4_and_5(monkeypatch, tmp_path):
    fake_cpuinfo(monkeypatch, tmp_path, "avx avx2 avx512f avx512bw")
    with pytest.warns(UserWarning, match="generic brand"):
        rec = meter_cpu(4.0)
    (cpu,) = rec.components
    zen45 = epyc_per_thread({4, 5})
    assert cpu.joules == pytest.approx(statistics.median(zen45) * 4.0)
    assert cpu.low == pytest.approx((1 - ct.IDLE_SHARE) * min(zen45) * 4.0)
    family = er.lookup_cpu_tdp("AMD EPYC", flags=er.cpu_info().flags).family
    assert any(n.startswith("AMD EPYC 9") for n in family) and not any(n.startswith("AMD EPYC 7") for n in family)
    assert any("models of this family that fit the CPU's flags" in n for n in rec.notes)


def test_flags_no_model_fits_keep_the_whole_family_and_say_so(monkeypatch, tmp_path):
    fake_cpuinfo(monkeypatch, tmp_path, "avx2 avx512f amx_tile")  # AMX: no EPYC has it
    with pytest.warns(UserWarning, match="generic brand"):
        rec = meter_cpu(4.0)
    epyc = [v for k, v in ct.cpu_power_table().items() if k.startswith("AMD EPYC")]
    assert rec.cpu_tdp_w == statistics.median(epyc)
    assert rec.components[0].joules == pytest.approx(statistics.median(epyc_per_thread(set(range(10)))) * 4.0)
    assert any("no model of the family fits" in n and f"all {len(epyc)} rows kept" in n for n in rec.notes)


def test_a_known_model_is_not_narrowed_and_notes_the_smt_caveat(monkeypatch, tmp_path):
    info = fake_cpuinfo(monkeypatch, tmp_path, "avx2 avx512f")  # flags that exclude a 7742, ignored for a model
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC 7742 64-Core Processor")
    assert "avx512f" in info.flags
    rec = meter_cpu(10.0)
    assert rec.components[0].joules == pytest.approx(225 / 128 * 10)
    assert not any(n.startswith("CPU family narrowed") for n in rec.notes)
    note = next(n for n in rec.notes if "per hardware thread" in n)
    assert "SMT sibling idles the core can draw up to about 2x that (the high bound covers it)" in note


@pytest.mark.parametrize(
    "name, isa",
    [
        ("AMD EPYC 7601", (False, False)),
        ("AMD EPYC 7B12", (False, False)),
        ("AMD EPYC 72F3", (False, False)),
        ("AMD EPYC Embedded 3251", (False, False)),
        ("AMD EPYC 9654", (True, False)),
        ("AMD EPYC 4484PX", (True, False)),
        ("AMD EPYC 9965", (True, False)),
        ("Intel Xeon Platinum 8259CL", (True, False)),
        ("Intel Xeon Gold 6338N", (True, False)),
        ("Intel Xeon Platinum 8480+", (True, True)),
        ("Intel Xeon Gold 6530", (True, True)),
        ("Intel Xeon CPU Max 9480", (True, True)),
        ("Intel Xeon W7-2495X", (True, True)),
        ("Intel Xeon 6980P", (True, True)),
        ("Intel Xeon 6780E", (False, False)),
        ("Intel Xeon E5-2686 v4", (False, False)),
        ("Intel Xeon Phi 7250", None),
        ("Intel Xeon 6369P", None),
    ],
)
def test_model_isa_reads_the_generation_from_the_model_number(name, isa):
    assert model_isa(name) == isa


def test_avx512_absence_counts_only_when_avx2_is_shown_and_amx_absence_never():
    names = ("AMD EPYC 7742", "AMD EPYC 9654", "Intel Xeon Gold 6248", "Intel Xeon Gold 6430")
    assert narrow_family(names, {"sse2"}) == (names, "")  # a masked CPU model: nothing concluded
    assert narrow_family(names, {"avx2"})[0] == ("AMD EPYC 7742",)
    assert narrow_family(names, {"avx2", "avx512f"})[0] == names[1:]  # no amx_tile: Sapphire Rapids stays
    assert narrow_family(names, {"avx2", "avx512f", "amx_tile"})[0] == ("Intel Xeon Gold 6430",)
