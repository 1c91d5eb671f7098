"""RAPL through the Linux powercap tree: package and DRAM energy counters, wrap-around, mirrored dies.

``/sys/class/powercap/intel-rapl:N`` (Intel, and AMD Zen, which exposes the same tree) holds one
zone per package with sub-zones for core, uncore and dram. We read ``package-*`` and ``dram``
zones only: ``core``/``uncore`` are parts of a package and ``psys`` covers the whole SoC, so
adding them would count the same joules twice.

Two traps are handled here:

* **Wrap-around.** ``energy_uj`` restarts from 0 after ``max_energy_range_uj`` (about 4.3 kJ on
  many Intel parts: every ~21 s at 200 W), so the meter polls it every :data:`RAPL_POLL_S`.
* **Mirrored dies.** Some kernels expose one ``package-X-die-Y`` zone per die of a multi-die AMD
  part, and every one of them reports the *same* package counter. Summing them multiplies the CPU
  energy by the number of dies. :func:`mirrored_zones` finds zones that advanced by the same amount
  over a window so the meter keeps one; distinct counters (two real sockets) are still summed.

The root is ``$WAVEFLOW_POWERCAP_ROOT`` when set (containers that mount the host's tree elsewhere;
tests that build a fake tree), else ``/sys/class/powercap``.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from .base import METHOD_RAPL, SCOPE_DEVICE, EnergyReader

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
POWERCAP_ENV = "WAVEFLOW_POWERCAP_ROOT"
# RAPL counters are 32-bit-ish (max_energy_range_uj ~ 2^32 uJ = 4.3 kJ on many Intel parts, up to
# 262 kJ on others): at 200 W a 4.3 kJ counter wraps every ~21 s, so poll well inside that.
RAPL_POLL_S = 5.0
# RAPL domains we add up. 'core'/'uncore' are parts of 'package' and 'psys' covers the whole SoC,
# so counting them too would double-count.
RAPL_DOMAINS = ("package", "dram")
#: Two package zones whose energy over the whole window differs by at most this many µJ read the
#: same counter (mirrored dies). Zones are read back to back within microseconds and a counter
#: unit is 15-61 µJ, so one shared counter gives identical deltas, while two real sockets differ by
#: millijoules or more over any window worth measuring.
RAPL_MIRROR_TOLERANCE_UJ = 5.0
_RAPL_DIR = re.compile(r"^(intel|amd)-rapl:\d+(:\d+)?$")


def powercap_root(root: str | os.PathLike | None = None) -> Path:
    """The powercap tree to read: ``root`` if given, else ``$WAVEFLOW_POWERCAP_ROOT``, else ``/sys/class/powercap``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(POWERCAP_ENV, "").strip()
    return Path(env) if env else DEFAULT_POWERCAP_ROOT


class RaplDomain(EnergyReader):
    """One powercap domain (``intel-rapl:0`` = package-0, ``intel-rapl:0:2`` = dram, ...).

    Args:
        path: the domain folder holding ``name``, ``energy_uj`` and ``max_energy_range_uj``.
        read_text: how files are read; injectable so tests can raise ``PermissionError``.
    """

    method = METHOD_RAPL
    scope = SCOPE_DEVICE
    poll_interval_s: float | None = RAPL_POLL_S

    def __init__(self, path: Path, read_text: Callable[[Path], str] | None = None) -> None:
        self.path = Path(path)
        self._read_text = read_text or (lambda p: p.read_text())
        self.zone_name = self._read_text(self.path / "name").strip()  # "package-0", "package-0-die-1", "dram"
        self.kind = "cpu" if self.zone_name.startswith("package") else self.zone_name
        self.device = f"{self.zone_name} ({self.path.name})"
        try:
            self.max_range_uj = int(self._read_text(self.path / "max_energy_range_uj"))
        except (OSError, ValueError):
            self.max_range_uj = 2**32  # the classic MSR width when the file is missing
        self.power_limit_w = self._long_term_limit_w()
        self._lock = threading.Lock()
        self._last = self._counter()  # raises PermissionError when energy_uj is root-only
        self._total_uj = 0

    def _long_term_limit_w(self) -> float:
        """The zone's long-term power limit (PL1, about the TDP) in W; NaN when it has none or it is unreadable.

        The TDP × time check uses it for a CPU the TDP table does not know.
        """
        try:
            if self._read_text(self.path / "constraint_0_name").strip() != "long_term":
                return math.nan
            return int(self._read_text(self.path / "constraint_0_power_limit_uw")) / 1e6
        except Exception:  # missing, root-only or garbage: the check just has no fallback
            return math.nan

    def _counter(self) -> int:
        return int(self._read_text(self.path / "energy_uj"))

    def poll(self) -> None:
        """Fold the counter into the running total; must run at least once per wrap period."""
        with self._lock:
            now = self._counter()
            delta = now - self._last
            if delta < 0:  # wrapped: the counter restarted from 0 after max_energy_range_uj
                delta += self.max_range_uj
            self._total_uj += delta
            self._last = now

    def read(self) -> float:
        """Joules since construction."""
        self.poll()
        return self._total_uj / 1e6


def rapl_domains(
    root: str | os.PathLike | None = None, read_text: Callable[[Path], str] | None = None
) -> list[RaplDomain]:
    """The package and dram domains under a powercap root (see :func:`powercap_root`).

    Returns an empty list when the root does not exist (VMs, macOS). An unreadable ``energy_uj``
    (``PermissionError`` on Linux >= 5.10 for non-root, ``OSError``, or text that is not a number)
    propagates so the caller can fall back to the estimate and say why.
    """
    root = powercap_root(root)
    if not root.is_dir():
        return []
    reader = read_text or (lambda p: p.read_text())
    domains = []
    for path in sorted(p for p in root.iterdir() if _RAPL_DIR.match(p.name)):
        try:
            name = reader(path / "name").strip()
        except FileNotFoundError:
            continue
        if name.startswith(RAPL_DOMAINS):
            domains.append(RaplDomain(path, reader))
    return domains


def mirrored_zones(deltas_uj: dict[str, float], tolerance_uj: float = RAPL_MIRROR_TOLERANCE_UJ) -> dict[str, str]:
    """Package zones that mirror another one: ``{mirror: kept}``.

    Args:
        deltas_uj: energy of each package zone over the whole window (µJ), keyed by zone; zones are
            compared in key order and the first of a group is kept.
        tolerance_uj: the largest difference that still counts as the same counter.

    Zones that both advanced by 0 are not reported (nothing to double-count and no evidence).
    """
    kept: list[str] = []
    mirrors: dict[str, str] = {}
    for zone in sorted(deltas_uj):
        delta = deltas_uj[zone]
        twin = next((k for k in kept if abs(deltas_uj[k] - delta) <= tolerance_uj and delta > 0), None)
        if twin is None:
            kept.append(zone)
        else:
            mirrors[zone] = twin
    return mirrors
