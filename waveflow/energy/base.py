"""What every energy reader shares: the reader interface, the method labels and the scopes.

A method label says how a number was obtained, a scope says what it covers. They are the two words
that travel with every joule the meter reports, so they live here, below every reader.
"""

from __future__ import annotations

import math

METHOD_NVML_ENERGY = "measured:nvml-energy"
METHOD_NVML_POWER = "measured:nvml-power"
METHOD_RAPL = "measured:rapl"
METHOD_TDP_UTIL = "estimated:tdp×utilisation"
METHOD_TDP_PER_THREAD = "estimated:tdp-per-thread×utilisation"
METHOD_WALL = "measured:wall-meter"

#: Everything on the device: other processes and the device's idle power included (RAPL, NVML, a wall meter).
SCOPE_DEVICE = "device"
#: Only the measured process tree's share (the CPU estimate: CPU seconds of the tree, no idle power of the box).
SCOPE_PROCESS_TREE = "process-tree"


class EnergyReader:
    """What the meter needs of a reader: cumulative joules, plus optional periodic attention.

    Subclasses set ``kind`` (gpu/cpu/dram/wall), ``device``, ``method`` and ``scope`` and implement
    :meth:`read`. ``poll_interval_s`` is None for readers that need no background thread; the
    meter starts its sampling thread only when some reader sets it. ``low_factor`` and
    ``high_factor`` turn a reading into the bounds of its interval; they are 1 for a measurement
    (no modelled interval) and set by estimates. ``tdp_w`` and ``tdp_source`` are the power the
    paper's TDP × time method would assume for a measured device and where it comes from (NaN and
    "" when the method has none); the meter sets them (:mod:`~waveflow.energy.tdp_check`).
    """

    kind: str = ""
    device: str = ""
    method: str = ""
    scope: str = SCOPE_DEVICE
    poll_interval_s: float | None = None
    low_factor: float = 1.0
    high_factor: float = 1.0
    tdp_w: float = math.nan
    tdp_source: str = ""

    @property
    def estimated(self) -> bool:
        """True when the number is an estimate (it then carries a low and a high bound)."""
        return self.method.startswith("estimated:")

    def read(self) -> float:
        """Joules since the reader was built (cumulative)."""
        raise NotImplementedError

    def poll(self) -> None:
        """Fold a fresh sample into the running total (no-op for counters read on demand)."""

    def close(self) -> None:
        """Release what the reader holds (no-op by default)."""
