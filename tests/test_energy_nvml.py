"""NVML on a fake library: short sections read as 0 J are noted, MIG slices, CUDA order mapped by UUID."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest
from test_energy import FakeNvml

from waveflow.energy import EnergyMeter
from waveflow.energy import readers as er


class UuidNvml(FakeNvml):
    """FakeNvml whose GPU i has the UUID ``GPU-000i-...``, resolvable by UUID like the real library."""

    def uuid(self, i: int) -> str:
        return f"GPU-000{i}-aaaa-bbbb-cccc-dddddddddddd"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for i in range(self.n):
            if self.uuid(i) == uuid:
                return i
        raise self.NVMLError("Not Found")


def fake_torch(uuids: list[str]) -> SimpleNamespace:
    """Enough of ``torch`` for the meter: CUDA initialised, devices in CUDA's own order with these UUIDs."""
    cuda = SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        synchronize=lambda: None,
        device_count=lambda: len(uuids),
        get_device_properties=lambda i: SimpleNamespace(uuid=uuids[i]),
    )
    return SimpleNamespace(cuda=cuda)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(var, raising=False)


def test_a_section_shorter_than_the_counter_update_is_noted_once():
    nvml = FakeNvml(n=1)
    with EnergyMeter("short", nvml=nvml, cpu=False, pue=1.0) as meter:
        for i in range(3):
            with meter.section(f"step {i}"):
                time.sleep(0.002)  # the fake counter does not move, like NVML's within ~20-100 ms
        nvml.energy_mj[0] += 5_000  # the block as a whole did read energy
    rec = meter.record
    notes = [n for n in rec.notes if "shorter than the counter's resolution" in n]
    assert len(notes) == 1 and "section 'step 0'" in notes[0] and notes[0].startswith("gpu:0 ")
    assert rec.joules("gpu") == pytest.approx(5.0)


def test_a_whole_block_reading_zero_is_noted():
    with EnergyMeter("idle gpu", nvml=FakeNvml(n=1), cpu=False, pue=1.0) as meter:
        time.sleep(0.001)
    assert any("0 J over the block" in n and "unknown, not zero" in n for n in meter.record.notes)


def test_mig_slice_gets_a_note_instead_of_failing_silently(monkeypatch):
    nvml = UuidNvml(n=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-1111-2222,{nvml.uuid(1)}")
    with EnergyMeter("mig", nvml=nvml, cpu=False, pue=1.0) as meter:
        nvml.energy_mj[1] += 3_000
    rec = meter.record
    assert [c.device for c in rec.components] == ["gpu:1 NVIDIA A100-SXM4-40GB"]
    assert rec.joules("gpu") == pytest.approx(3.0)
    assert any("MIG-1111-2222" in n and "NVML cannot meter a MIG slice; measure the parent GPU" in n for n in rec.notes)


@pytest.mark.parametrize("prefix", ["GPU-", ""])  # torch prints the UUID with or without the prefix
def test_integer_devices_are_mapped_by_uuid_when_torch_has_cuda(monkeypatch, prefix):
    nvml = UuidNvml(n=2)
    # CUDA orders fastest first: CUDA device 0 is the GPU that NVML (PCI order) calls 1.
    uuids = [nvml.uuid(1), nvml.uuid(0)]
    monkeypatch.setitem(sys.modules, "torch", fake_torch([u.removeprefix("GPU-") if not prefix else u for u in uuids]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with EnergyMeter("uuid", nvml=nvml, cpu=False, pue=1.0) as meter:
        nvml.energy_mj[0] += 1_000  # 1 J on NVML's GPU 0: not ours
        nvml.energy_mj[1] += 100_000  # 100 J on NVML's GPU 1 = CUDA device 0
    rec = meter.record
    assert rec.joules("gpu") == pytest.approx(100.0)
    assert not any("PCI_BUS_ID" in n for n in rec.notes)


def test_integer_devices_without_torch_note_the_pci_bus_order_assumption(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not loaded in this process
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nvml = UuidNvml(n=2)
    with EnergyMeter("index", nvml=nvml, cpu=False, pue=1.0) as meter:
        nvml.energy_mj[1] += 2_000
    rec = meter.record
    assert rec.joules("gpu") == pytest.approx(2.0)
    note = next(n for n in rec.notes if "read as NVML indices" in n)
    assert note.startswith("CUDA_VISIBLE_DEVICES=1 ") and "assumes CUDA_DEVICE_ORDER=PCI_BUS_ID" in note
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # the assumption holds: nothing to say
    with EnergyMeter("index", nvml=UuidNvml(n=2), cpu=False, pue=1.0) as meter:
        pass
    assert not any("PCI_BUS_ID" in n for n in meter.record.notes)


def test_gpu_components_are_device_scope_and_mixing_with_the_estimate_is_noted(monkeypatch):
    monkeypatch.setattr(er, "cpu_info", lambda: er.CpuInfo(4, 4, 1, 4, False))
    nvml = FakeNvml(n=1)
    with EnergyMeter("mixed", nvml=nvml, powercap_root="/nonexistent", cpu_tdp_w=100, pue=1.0) as meter:
        nvml.energy_mj[0] += 10_000
    rec = meter.record
    assert {c.kind: c.scope for c in rec.components} == {"gpu": "device", "cpu": "process-tree"}
    assert rec.row()["gpu_scope"] == "device" and rec.scope() == "device,process-tree"
    assert any("different scopes (device: gpu; process-tree: cpu)" in n for n in rec.notes)
