"""NVIDIA GPUs through NVML: the total-energy counter (Volta+), else power sampled and integrated.

Which GPUs: the ones this process may use. ``CUDA_VISIBLE_DEVICES`` can hold

* integers: CUDA ordinals of *CUDA's* device order, which is fastest-first by default while NVML
  numbers GPUs in PCI bus order. When torch is loaded with CUDA initialised we ask it for each
  visible device's UUID and look the GPU up in NVML by that UUID; otherwise we read the integers as
  NVML indices and say that this assumes ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
* ``GPU-<uuid>``: looked up by UUID.
* ``MIG-<uuid>``: a MIG slice. NVML cannot meter a slice, so it gets a note telling the user to
  measure the parent GPU instead of failing silently.

NVML's energy counter updates every ~20-100 ms, so a section shorter than that can read 0 J;
:func:`zero_energy_note` words the note the meter writes when that happens.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any

from .base import METHOD_NVML_ENERGY, METHOD_NVML_POWER, SCOPE_DEVICE, EnergyReader

# NVML power readings are refreshed every ~20-100 ms (a 1 s average on Ampere and newer), so
# 10 Hz is the slowest rate that still follows a training step and costs nothing measurable.
DEFAULT_POLL_HZ = 10.0


class NvmlEnergyCounter(EnergyReader):
    """GPU energy from NVML's total-energy counter (mJ since the driver loaded; Volta and newer)."""

    method = METHOD_NVML_ENERGY
    scope = SCOPE_DEVICE
    poll_interval_s: float | None = None
    kind = "gpu"

    def __init__(self, nvml: Any, handle: Any, index: int | str, name: str) -> None:
        self._nvml, self._handle = nvml, handle
        self.device, self.name = f"gpu:{index} {name}", name
        self.power_limit_w = enforced_power_limit_w(nvml, handle)
        self._start_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def read(self) -> float:
        return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start_mj) / 1e3


class NvmlPowerIntegrator(EnergyReader):
    """GPU energy by integrating ``nvmlDeviceGetPowerUsage`` (mW) sampled by the meter's thread.

    Trapezoidal integration between samples; ``read()`` takes a fresh sample, so the figure at the
    end of a block covers the block up to that instant.
    """

    method = METHOD_NVML_POWER
    scope = SCOPE_DEVICE
    kind = "gpu"

    def __init__(self, nvml: Any, handle: Any, index: int | str, name: str, poll_hz: float = DEFAULT_POLL_HZ) -> None:
        self._nvml, self._handle = nvml, handle
        self.device, self.name = f"gpu:{index} {name}", name
        self.power_limit_w = enforced_power_limit_w(nvml, handle)
        self.poll_interval_s: float | None = 1.0 / poll_hz
        self._lock = threading.Lock()
        self._t = time.perf_counter()
        self._w = nvml.nvmlDeviceGetPowerUsage(handle) / 1e3
        self._joules = 0.0
        self.samples = 1

    def poll(self) -> None:
        watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3
        with self._lock:
            now = time.perf_counter()
            self._joules += 0.5 * (watts + self._w) * (now - self._t)
            self._t, self._w = now, watts
            self.samples += 1

    def read(self) -> float:
        self.poll()
        return self._joules


def enforced_power_limit_w(nvml: Any, handle: Any) -> float:
    """The GPU's enforced power limit in W (``nvmlDeviceGetEnforcedPowerLimit``), NaN when unreadable.

    The TDP × time check falls back to it for a GPU that ``gpus.csv`` does not know.
    """
    try:
        return float(nvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1e3
    except Exception:  # not supported, an older pynvml, a fake: the check just has no fallback
        return math.nan


def cuda_uuids() -> list[str] | None:
    """UUIDs (``GPU-...``) of the CUDA devices in CUDA's own order, when torch has CUDA initialised.

    None when torch is not imported or CUDA is not initialised: asking then would initialise a
    CUDA context on every GPU, a side effect a meter must not have.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
            return None
        out = []
        for i in range(torch.cuda.device_count()):
            uuid = str(torch.cuda.get_device_properties(i).uuid)
            out.append(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return out
    except Exception:  # an old torch without .uuid, a driver error: fall back to indices
        return None


def visible_gpu_handles(nvml: Any) -> tuple[list[tuple[int | str, Any]], list[str]]:
    """``([(label, NVML handle)], notes)`` for the GPUs this process may use (see the module doc)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())], []
    if not visible.strip():  # set but empty: CUDA sees no GPU, so none is this process's
        return [], []
    items = []
    for item in (x.strip() for x in visible.split(",")):
        if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
            break  # CUDA stops at the first invalid entry; so do we
        items.append(item)
    out: list[tuple[int | str, Any]] = []
    notes: list[str] = []
    uuids = cuda_uuids() if any(i.isdigit() for i in items) else None
    assumed = []
    for pos, item in enumerate(items):
        if item.startswith("MIG-"):
            notes.append(
                f"CUDA_VISIBLE_DEVICES names the MIG slice {item}: NVML cannot meter a MIG slice; "
                "measure the parent GPU (set CUDA_VISIBLE_DEVICES to its GPU- UUID or index); not measured"
            )
        elif item.startswith("GPU-"):
            out.append((pos, nvml.nvmlDeviceGetHandleByUUID(item)))
        elif uuids is not None and pos < len(uuids):
            out.append((int(item), nvml.nvmlDeviceGetHandleByUUID(uuids[pos])))
        else:
            out.append((int(item), nvml.nvmlDeviceGetHandleByIndex(int(item))))
            assumed.append(item)
    if assumed and os.environ.get("CUDA_DEVICE_ORDER", "") != "PCI_BUS_ID" and _gpu_count(nvml) > 1:
        notes.append(
            f"CUDA_VISIBLE_DEVICES={','.join(assumed)} read as NVML indices, which assumes "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID (CUDA's default order is fastest first); import torch and "
            "initialise CUDA before the meter starts to match GPUs by UUID"
        )
    return out, notes


def _gpu_count(nvml: Any) -> int:
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 2  # unknown: keep the note


def nvml_readers(nvml: Any, poll_hz: float = DEFAULT_POLL_HZ) -> tuple[list[EnergyReader], list[str]]:
    """One reader per visible GPU: the energy counter when supported, else power polling.

    Args:
        nvml: the ``pynvml`` module (or a fake with the same functions and ``NVMLError``);
            ``nvmlInit`` must already have succeeded.
        poll_hz: sampling rate for GPUs without the counter.

    Returns:
        ``(readers, notes)``: notes say which GPU fell back to what and why.
    """
    error = getattr(nvml, "NVMLError", Exception)
    handles, notes = visible_gpu_handles(nvml)
    readers: list[EnergyReader] = []
    for index, handle in handles:
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            readers.append(NvmlEnergyCounter(nvml, handle, index, name))
            continue
        except error as exc:
            reason = f"{type(exc).__name__}: {exc}"
        try:
            readers.append(NvmlPowerIntegrator(nvml, handle, index, name, poll_hz))
            notes.append(f"gpu:{index} {name}: no NVML energy counter ({reason}); power sampled at {poll_hz:g} Hz")
        except error as exc:
            notes.append(
                f"gpu:{index} {name}: neither NVML energy nor power is readable ({type(exc).__name__}); not measured"
            )
    return readers, notes


def zero_energy_note(device: str, what: str, seconds: float) -> str:
    """The note for an NVML energy counter that read 0 J over ``seconds`` > 0 (first time per GPU)."""
    return (
        f"{device}: 0 J over {what} ({seconds:.3f} s): shorter than the counter's resolution "
        "(NVML updates its energy counter every ~20-100 ms), so the GPU energy of this span is unknown, "
        "not zero (further such spans of this GPU not listed)"
    )
