"""Carbontracker 2.4.7 offline: no connection attempt, our intensity/PUE, logs parsed correctly."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from carbontracker import constants
from carbontracker.tracker import CarbonTracker

from waveflow.energy import EnergyMeter
from waveflow.energy import readers as er
from waveflow.energy.carbontracking import CarbontrackerSession, expected_energy_kwh

NO_RAPL = not Path("/sys/class/powercap").is_dir()


@pytest.fixture
def no_network(monkeypatch):
    """Make every way to open a connection fail, and record the attempts."""
    attempts: list[tuple] = []

    def refuse(name):
        def f(*args, **kwargs):
            attempts.append((name, args[1:] if name.startswith("socket.") else args))
            raise OSError(f"test: network disabled ({name})")

        return f

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


def busy(seconds: float) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def test_network_blocker_really_blocks(no_network):
    with pytest.raises(OSError):
        socket.create_connection(("ipinfo.io", 80), timeout=0.1)
    assert no_network, "the blocker must record attempts, or the offline test below proves nothing"


def test_offline_training_step_with_meter_and_carbontracker(no_network, tmp_path, monkeypatch):
    import cpuinfo

    probes = []
    monkeypatch.setattr(cpuinfo, "get_cpu_info", lambda *a, **k: probes.append(1) or {"brand_raw": "probe"})
    torch.manual_seed(0)
    model = torch.nn.Conv1d(1, 4, 9, padding=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2, 1, 2048)
    saved = (constants.WORLD_AVG_CARBON_INTENSITY, constants.PUE_2023)
    meter = EnergyMeter("offline", intensity="FR", pue="uptime-2023", cpu_tdp_w=100).start()
    session = CarbontrackerSession(2, tmp_path, intensity="FR", pue="uptime-2023", meter=meter, update_interval=0.05)
    t0 = time.perf_counter()
    session.start()  # builds the CarbonTracker: geolocation, intensity service, components
    construct_s = time.perf_counter() - t0
    with meter, session as ct:
        for _ in range(2):
            ct.epoch_start()
            for _ in range(3):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
            ct.epoch_end()
    assert no_network == []
    assert probes == []  # py-cpuinfo's 1.2 s subprocess probe
    assert construct_s < 2.0, f"CarbonTracker took {construct_s:.1f} s to build: a geolocation timeout crept back?"
    r = ct.result
    assert r is not None and r.epochs == 2 and r.energy_kwh > 0
    assert r.intensity_g_per_kwh == pytest.approx(44.18) and r.pue == 1.58
    # carbontracker prints grams with 12 decimals, so tiny test energies keep only ~7 significant digits
    assert r.co2e_g == pytest.approx(r.energy_kwh * 44.18, rel=1e-4, abs=1e-12)
    assert [s.label for s in meter.record.sections] == ["epoch 1", "epoch 2"]
    assert meter.record.intensity_code == "FR" and meter.record.pue == 1.58
    assert (constants.WORLD_AVG_CARBON_INTENSITY, constants.PUE_2023) == saved
    assert (
        "waveflow: geolocation disabled"
        in Path(r.std_log)
        .with_name(Path(r.std_log).name.replace("_carbontracker.log", "_carbontracker_err.log"))
        .read_text()
    )


def test_actual_is_the_sum_of_epochs_not_the_prediction(tmp_path):
    """2.4.7's parser.aggregate_consumption returns the prediction for >1 epoch; we must not."""
    durations = (0.1, 0.4, 0.25)  # unequal, so 3 x epoch 1 (the prediction) != the sum
    with CarbontrackerSession(3, tmp_path, pue=1.5, intensity="DE", update_interval=0.02) as ct:
        for d in durations:
            ct.epoch_start()
            busy(d)
            ct.epoch_end()
    r = ct.result
    assert r.epochs == 3 and len(r.epoch_energy_j) == 3
    watts = max(sum(p) for p in zip(*r.epoch_power_w.values()))
    rounding = 3 * 0.005 * watts * r.pue / 3.6e6  # the log prints durations to 10 ms
    assert r.energy_kwh == pytest.approx(expected_energy_kwh(r), abs=rounding)
    assert r.energy_kwh == pytest.approx(sum(durations) * watts * 1.5 / 3.6e6, rel=0.1)
    assert r.predicted_kwh == pytest.approx(3 * r.epoch_energy_j[0] * 1.5 / 3.6e6, abs=rounding)
    assert abs(r.energy_kwh - r.predicted_kwh) > 0.3 * r.energy_kwh
    assert r.extrapolated_kwh == pytest.approx(r.energy_kwh)  # all 3 of 3 epochs monitored
    assert r.co2e_g == pytest.approx(r.energy_kwh * r.intensity_g_per_kwh, rel=1e-6)


@pytest.mark.skipif(not NO_RAPL, reason="with RAPL carbontracker measures instead of using the TDP table")
def test_method_label_on_a_generic_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(er, "cpu_brand", lambda: "AMD EPYC")
    with CarbontrackerSession(1, tmp_path, update_interval=0.02) as ct:
        ct.epoch_start()
        busy(0.05)
        ct.epoch_end()
    r = ct.result
    assert r.method.endswith("generic CPU, TDP/2 constant (AMD EPYC 7232P, 120 W)")
    assert r.epoch_power_w["cpu"] == [60.0]
    assert any("first table row" in n for n in r.notes)


def test_short_epochs_are_noted_and_do_not_crash(tmp_path):
    with CarbontrackerSession(3, tmp_path, update_interval=1.0) as ct:
        for _ in range(3):
            ct.epoch_start()
            busy(0.02)
            ct.epoch_end()
    r = ct.result
    assert r.epochs == 3 and r.energy_kwh > 0
    assert any("ended before carbontracker's sampler" in n for n in r.notes)


def test_early_stop_and_restored_constants_after_an_exception(tmp_path):
    saved = (constants.WORLD_AVG_CARBON_INTENSITY, constants.PUE_2023)
    with pytest.raises(RuntimeError):
        with CarbontrackerSession(4, tmp_path, pue=1.3, update_interval=0.02) as ct:
            ct.epoch_start()
            busy(0.05)
            ct.epoch_end()
            ct.epoch_start()
            raise RuntimeError("diverged")
    assert (constants.WORLD_AVG_CARBON_INTENSITY, constants.PUE_2023) == saved
    r = ct.result
    assert r.epochs == 2 and r.energy_kwh > 0  # the open epoch was closed and counted
    assert any("stopped after 2 of 4" in n for n in r.notes) and "block raised RuntimeError" in r.notes


def test_carbontracker_exit_is_caught(tmp_path, monkeypatch):
    """carbontracker's error paths call sys.exit(70); a notebook kernel must survive them."""

    def exit70(self):
        raise SystemExit(70)

    monkeypatch.setattr(CarbonTracker, "epoch_end", exit70)
    with CarbontrackerSession(2, tmp_path, update_interval=0.02) as ct:
        ct.epoch_start()
        ct.epoch_end()
    assert any("epoch_end failed" in n and "SystemExit" in n for n in ct.notes)


def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        CarbontrackerSession(0, tmp_path)
    with pytest.raises(ValueError, match="monitor_epochs"):
        CarbontrackerSession(3, tmp_path, monitor_epochs=5)
    with pytest.raises(ValueError):
        CarbontrackerSession(3, tmp_path, intensity="XX-not-a-code")


def test_carbontracker_prints_nothing_and_its_warnings_become_notes(tmp_path, capfd):
    """Its console lines (log handlers bound to sys.stdout, component prints) are captured, not shown."""
    with CarbontrackerSession(1, tmp_path, update_interval=0.05) as ct:
        ct.epoch_start()
        time.sleep(0.12)
        ct.epoch_end()
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    console = ct._console.getvalue()
    assert "CarbonTracker:" in console, "carbontracker's lines were expected in the captured console"
    said = [n for n in ct.result.notes if n.startswith("carbontracker said: ")]
    assert said == [f"carbontracker said: {n}" for n in ct.console_notes()]
    assert not any("No API keys provided" in n for n in said)
