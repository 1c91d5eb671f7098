"""Wall-meter logs (synthetic): exact integrals over the window, bad logs as one-line notes; idle baseline."""

from __future__ import annotations

import re
import sys
import time

import pytest
from test_energy import FakeNvml

from waveflow.cli import main as cli_main
from waveflow.energy import EnergyMeter, read_records, summary
from waveflow.energy import readers as er
from waveflow.energy.wallmeter import WallLogError, integrate, read_wall_log, wall_energy


@pytest.fixture(autouse=True)
def fixed_machine(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(er, "cpu_info", lambda: er.CpuInfo(4, 4, 1, 4, False))


def write_log(path, samples, header="timestamp,watts"):
    path.write_text(header + "\n" + "".join(f"{t},{w}\n" for t, w in samples))
    return path


def test_integral_is_exact_with_interpolated_edges(tmp_path):
    flat = write_log(tmp_path / "flat.csv", [(t, 100.0) for t in range(11)])
    assert wall_energy(flat, 2.5, 7.25) == (pytest.approx(475.0), None)
    # A ramp w = 10 t sampled each second: linear interpolation is exact, so the window's
    # integral is 5 (b^2 - a^2) even though neither edge is a sample.
    ts, ws = read_wall_log(write_log(tmp_path / "ramp.csv", [(t, 10.0 * t) for t in range(6)]))
    assert integrate(ts, ws, 1.5, 3.5) == pytest.approx(5 * (3.5**2 - 1.5**2))
    assert integrate(ts, ws, 2.0, 2.0) == 0.0
    # a window inside one sample interval
    assert integrate(ts, ws, 1.25, 1.75) == pytest.approx(5 * (1.75**2 - 1.25**2))


@pytest.mark.parametrize(
    "content, problem",
    [
        ("timestamp,watts\n5,100\n6,100\n", "samples cover 5.000-6.000 but the window is 0.000-10.000"),
        ("timestamp,watts\n0,100\n4,100\n", "samples cover 0.000-4.000 but the window is 0.000-10.000"),
        ("timestamp,watts\n0,100\n7,100\n3,100\n11,100\n", "line 4: timestamp 3 is not after 7.0"),
        ("timestamp,watts\n0,100\n5,-3\n11,100\n", "line 3: watts '-3' is negative"),
        ("timestamp,watts\n0,100\n5,abc\n11,100\n", "line 3: watts 'abc' is not a finite number"),
        ("timestamp,watts\n0,100\n5,inf\n11,100\n", "line 3: watts 'inf' is not a finite number"),
        ("time,power\n0,100\n11,100\n", "header is 'time,power'; expected 'timestamp,watts'"),
        ("timestamp,watts\n0,100,1\n11,100\n", "line 2 has 3 fields"),
        ("timestamp,watts\n0,100\n", "1 sample(s)"),
        ("", "header is 'an empty file'"),
    ],
)
def test_bad_logs_give_one_line_and_no_figure(tmp_path, content, problem):
    path = tmp_path / "wall.csv"
    path.write_text(content)
    joules, note = wall_energy(path, 0.0, 10.0)
    assert joules is None
    assert problem in note and note.startswith(f"wall meter {path}: ") and note.endswith("; no wall figure")
    assert "\n" not in note


def test_missing_log_is_a_note(tmp_path):
    joules, note = wall_energy(tmp_path / "absent.csv", 0.0, 1.0)
    assert joules is None and "cannot read it (FileNotFoundError" in note
    with pytest.raises(WallLogError):
        read_wall_log(tmp_path / "absent.csv")


def around_now(tmp_path, watts=50.0, before=30.0, after=120.0, step=0.5):
    now = time.time()
    n = int((before + after) / step)
    return write_log(tmp_path / "plug.csv", [(f"{now - before + i * step:.3f}", watts) for i in range(n + 1)])


def test_meter_stores_the_wall_figure_beside_the_others_and_their_ratio(tmp_path):
    log = around_now(tmp_path, watts=50.0)
    nvml = FakeNvml(n=1)
    with EnergyMeter("plug", nvml=nvml, cpu=False, pue=1.0, wall_meter=log) as meter:
        time.sleep(0.05)
        nvml.energy_mj[0] += 2_000  # 2 J on the GPU
    rec = meter.record
    wall = next(c for c in rec.components if c.kind == "wall")
    assert (wall.method, wall.scope) == (er.METHOD_WALL, "device")
    assert wall.joules == pytest.approx(50.0 * rec.wall_s, abs=1e-4)  # the window (Unix-time float precision)
    assert rec.energy_j == pytest.approx(2.0)  # the wall figure checks the total, it is not added to it
    assert rec.wall_ratio == pytest.approx(wall.joules / 2.0)
    row = rec.row()
    assert row["wall_j"] == wall.joules and row["wall_ratio"] == rec.wall_ratio and row["wall_scope"] == "device"
    assert row["energy_j"] == pytest.approx(2.0) and "wall meter / total" in summary(rec)


def test_meter_with_a_log_that_ends_too_early_keeps_measuring(tmp_path):
    log = around_now(tmp_path, before=30.0, after=-10.0)  # the plug stopped writing 10 s ago
    with EnergyMeter("late", nvml=FakeNvml(n=1), cpu=False, pue=1.0, wall_meter=log) as meter:
        pass
    rec = meter.record
    assert not any(c.kind == "wall" for c in rec.components) and rec.row()["wall_j"] == ""
    assert any("but the window is" in n and "no wall figure" in n for n in rec.notes)


def test_cli_wall_meter(tmp_path, capsys):
    plug, log = around_now(tmp_path, watts=80.0), tmp_path / "log.csv"
    rc = cli_main(
        ["energy", "--wall-meter", str(plug), "--cpu-tdp", "100", "--log", str(log), "--", sys.executable, "-c", "pass"]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert re.search(r"\n\s+wall\s+\S+ J\s+measured:wall-meter\s+device\s+wall meter ", err), err
    row = read_records(log).iloc[0]
    assert row.wall_j == pytest.approx(80.0 * row.wall_s, abs=1e-4) and row.wall_method == er.METHOD_WALL
    assert row.wall_ratio == pytest.approx(row.wall_j / row.energy_j)


# ------------------------------------------------------------------------------------------
# idle baseline
class SteadyNvml(FakeNvml):
    """A GPU drawing a steady ``watts`` whenever it is read, plus whatever the test adds."""

    def __init__(self, watts: float):
        super().__init__(n=1)
        self.watts, self.t0, self.extra_mj = watts, time.perf_counter(), 0.0

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return 1_000_000 + self.watts * 1e3 * (time.perf_counter() - self.t0) + self.extra_mj


def test_idle_baseline_gives_dynamic_energy():
    nvml = SteadyNvml(watts=40.0)
    with EnergyMeter("idle", nvml=nvml, cpu=False, pue=1.0, idle_baseline_s=0.2) as meter:
        time.sleep(0.1)
        nvml.extra_mj += 30_000  # 30 J of work on top of the 40 W idle draw
    rec = meter.record
    assert rec.idle_baseline_s == 0.2 and rec.idle_w == pytest.approx(40.0, rel=1e-3)
    assert rec.energy_j == pytest.approx(30.0 + 40.0 * rec.wall_s, rel=1e-3)
    assert rec.dynamic_j == pytest.approx(30.0, abs=0.05)
    row = rec.row()
    assert row["idle_baseline_s"] == 0.2 and row["dynamic_j"] == pytest.approx(30.0, abs=0.05)
    assert "dynamic" in summary(rec) and "idle measured over 0.2 s before the block" in summary(rec)


def test_idle_baseline_is_off_by_default_and_checked():
    with EnergyMeter("plain", nvml=FakeNvml(n=1), cpu=False, pue=1.0) as meter:
        pass
    row = meter.record.row()
    assert row["idle_baseline_s"] == row["idle_w"] == row["dynamic_j"] == ""
    with pytest.raises(ValueError, match="idle_baseline_s"):
        EnergyMeter(idle_baseline_s=-1)


def test_cli_idle_baseline(tmp_path, capsys):
    log = tmp_path / "log.csv"
    rc = cli_main(
        ["energy", "--idle-baseline", "0.2", "--cpu-tdp", "100", "--log", str(log), "--", sys.executable, "-c", "pass"]
    )
    assert rc == 0
    row = read_records(log).iloc[0]
    assert row.idle_baseline_s == 0.2 and row.idle_w >= 0 and row.dynamic_j <= row.energy_j
    assert "dynamic" in capsys.readouterr().err
