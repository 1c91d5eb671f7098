"""CPU power data for the estimate: TDP per package and power per hardware thread, with their sources.

Two bundled tables (``waveflow/_data/hardware/``, provenance in its README):

* ``cpu_power.csv`` — ``Name,TDP``, CodeCarbon's table (MIT), vendored unchanged, so the estimate no
  longer depends on another tool's installed package data;
* ``cpu_threads.csv`` — ``name,cores,threads,source``: cores and hardware threads per package for
  the models cloud VMs and workstations commonly report, keyed by the TDP table's names.

:func:`lookup_cpu_tdp` matches a brand string with explicit match levels (exact / model number /
family median / whole-table median; ``override`` is the user's value); given the CPU's flags, a
family is first narrowed to the generations the machine can be (:mod:`~waveflow.energy.cpu_isa`).
:func:`thread_power` turns
the TDP into watts per busy hardware thread for VMs, where the visible vCPUs are a slice of a
package, with a low figure that leaves out the idle share (see :data:`IDLE_SHARE`).
"""

from __future__ import annotations

import csv
import functools
import re
import statistics
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..paths import PACKAGE_DATA
from .cpu_isa import narrow_family

CPU_POWER_CSV = PACKAGE_DATA / "hardware" / "cpu_power.csv"
CPU_THREADS_CSV = PACKAGE_DATA / "hardware" / "cpu_threads.csv"

#: Watts per hardware thread when the package's thread count is unknown: CodeCarbon's default for a
#: CPU it cannot find (``DEFAULT_POWER_PER_CORE = 4`` in ``codecarbon/core/cpu.py``, 3.3.x, applied
#: per thread: "the default power consumption of 4 W per thread").
DEFAULT_W_PER_THREAD = 4.0
DEFAULT_W_PER_THREAD_SOURCE = "CodeCarbon's default for an unknown CPU, 4 W per thread (codecarbon/core/cpu.py)"
#: Share of a package's TDP drawn at zero load (static and uncore power), which the low bound leaves
#: out: CodeCarbon's CPU-load model floors a package at 10 % of its TDP
#: (``CPU._calculate_power_from_cpu_load`` in ``codecarbon/external/hardware.py``, 3.3.x).
IDLE_SHARE = 0.10
#: How :attr:`CpuTdp.narrowing` begins when no model of a family fits the CPU's flags.
_NO_FIT = "no model of the family fits"


@dataclass(frozen=True)
class CpuTdp:
    """The TDP used for the CPU estimate and where it came from.

    ``match`` is one of ``"override"`` (user value), ``"exact"`` (the normalised brand equals a
    table name), ``"model"`` (the brand's model number picks one table row), ``"generic"`` (the
    brand has no model number, e.g. the KVM brand ``AMD EPYC``; the TDP is the median of the
    table rows of that family, whose range is in ``detail``) and ``"default"`` (nothing matched;
    median of the whole table). ``family`` holds the matched table names of a generic brand, after
    the instruction-set filter when one applied; ``narrowing`` says which filter and how many rows
    it kept, or why the whole family was kept ("" when the flags were not looked at).
    """

    brand: str
    tdp_w: float
    match: str
    matched_name: str
    detail: str
    family: tuple[str, ...] = ()
    narrowing: str = ""

    @property
    def narrowed(self) -> bool:
        """The family was narrowed to the models that fit the CPU's flags (not kept whole)."""
        return bool(self.narrowing) and not self.narrowing.startswith(_NO_FIT)


@dataclass(frozen=True)
class ThreadPower:
    """Watts per busy hardware thread for the per-thread estimate.

    Args:
        watts: the middle figure, TDP / threads per package: a busy thread's share of a package
            whose power is split evenly between its threads (idle share included).
        watts_low: the low figure, the dynamic share only: ``(1 - IDLE_SHARE) x`` the lowest
            per-thread figure the match allows (a generic brand's cheapest family member).
        threads: hardware threads per package, when known.
        source: where the thread count or the per-thread figure comes from.
    """

    watts: float
    watts_low: float
    threads: int | None
    source: str


def _parse_tdp(value: str) -> float:
    # the table has a few ranges written "33.34.8" (= 33.3 to 34.8 W); take the midpoint.
    parts = value.strip().split(".")
    if len(parts) == 3:
        return (float(f"{parts[0]}.{parts[1]}") + float(f"{parts[0]}.{parts[2]}")) / 2
    return float(value)


@functools.lru_cache(maxsize=4)
def cpu_power_table(path: Path = CPU_POWER_CSV) -> dict[str, float]:
    """``{name: TDP W}`` from the vendored ``waveflow/_data/hardware/cpu_power.csv`` (CodeCarbon's, ~4,900 rows)."""
    table = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                table[row["Name"].strip()] = _parse_tdp(row["TDP"])
            except (ValueError, KeyError, AttributeError):
                continue
    return table


@functools.lru_cache(maxsize=4)
def cpu_threads_table(path: Path = CPU_THREADS_CSV) -> dict[str, tuple[int, int, str]]:
    """``{name: (cores, threads, source)}`` per package from ``waveflow/_data/hardware/cpu_threads.csv``.

    Raises:
        ValueError: a row whose counts are not positive integers with cores <= threads <= 2 x cores.
    """
    out: dict[str, tuple[int, int, str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                cores, threads = int(row["cores"]), int(row["threads"])
            except (KeyError, TypeError, ValueError):
                cores = threads = 0
            if not (0 < cores <= threads <= 2 * cores):
                raise ValueError(
                    f"{path}: line {n} ({row.get('name')!r}) has cores={row.get('cores')!r}, "
                    f"threads={row.get('threads')!r}; expected integers with 0 < cores <= threads <= 2 x cores"
                )
            out[row["name"].strip()] = (cores, threads, row.get("source", "").strip())
    return out


def _normalise(name: str) -> str:
    """Lower-case brand without trademarks, clock, core count and filler words."""
    s = name.lower().replace("(r)", " ").replace("(tm)", " ").replace("®", " ").replace("™", " ")
    s = re.sub(r"@.*$", " ", s)  # "@ 3.20GHz"
    s = re.sub(r"\(.*?\)", " ", s)  # "(Skylake, IBRS)"
    s = re.sub(r"\b\d+-core\b|\bprocessor\b|\bcpu\b|\bwith radeon.*$", " ", s)
    return " ".join(s.split())


def lookup_cpu_tdp(brand: str, table: dict[str, float] | None = None, flags: Collection[str] | None = None) -> CpuTdp:
    """Find the TDP of a CPU brand string in the TDP table, saying how good the match is.

    Unlike a first-substring rule (which maps the bare KVM brand ``AMD EPYC`` to the first EPYC
    row), a brand without a model number is treated as a family and gets the family's median TDP
    with its range in the detail, and an unknown brand gets the whole table's median; both are
    flagged so the caller can warn and the user can pass ``cpu_tdp_w``.

    Args:
        brand: the CPU's brand string.
        table: ``{name: TDP W}`` (default: :func:`cpu_power_table`).
        flags: the CPU's ``/proc/cpuinfo`` flags; given, a family keeps only the models whose
            instruction sets agree with them (:func:`~waveflow.energy.cpu_isa.narrow_family`), or all
            of them when none does. None (unknown flags) keeps the whole family. A brand with a
            model number is never filtered.
    """
    if table is None:  # the bundled table: cached per brand and flags, as every meter start asks
        return _lookup_bundled(brand, None if flags is None else frozenset(flags))
    return _lookup(brand, table, flags)


@functools.lru_cache(maxsize=16)
def _lookup_bundled(brand: str, flags: frozenset[str] | None) -> CpuTdp:
    return _lookup(brand, cpu_power_table(), flags)


def _lookup(brand: str, table: dict[str, float], flags: Collection[str] | None) -> CpuTdp:
    normalised = {_normalise(k): k for k in table}
    target = _normalise(brand)
    median_all = statistics.median(table.values())
    if target in normalised:
        name = normalised[target]
        return CpuTdp(brand, table[name], "exact", name, f"matched {name!r} ({table[name]:g} W)")
    tokens = target.split()
    models = [t for t in tokens if any(c.isdigit() for c in t)]
    if models:
        hits = [k for k in normalised if all(m in k.split() for m in models) and k.split()[0] == tokens[0]]
        if hits:
            best = min(hits, key=len)  # the plain model, not its "K"/"T" variants
            name = normalised[best]
            return CpuTdp(
                brand, table[name], "model", name, f"model {' '.join(models)!r} matched {name!r} ({table[name]:g} W)"
            )
    elif tokens:
        family = tuple(normalised[k] for k in sorted(k for k in normalised if k.split()[: len(tokens)] == tokens))
        if family:
            return _family_tdp(brand, target, family, table, flags)
    return CpuTdp(
        brand,
        median_all,
        "default",
        "table median",
        f"unknown CPU {brand!r}: median TDP of the {len(table)}-row table = {median_all:g} W",
    )


def _family_tdp(
    brand: str, target: str, family: tuple[str, ...], table: dict[str, float], flags: Collection[str] | None
) -> CpuTdp:
    """The median TDP of a generic brand's family, narrowed by the CPU's flags when they allow it."""
    narrowing, rows = "", f"{len(family)} table rows of this family"
    if flags is not None:
        kept, rule = narrow_family(family, flags)
        counts = cpu_threads_table()
        if rule and kept:
            narrowing = (
                f"{rule}: {len(kept)} of the family's {len(family)} TDP rows kept, "
                f"{sum(n in counts for n in kept)} of its {sum(n in counts for n in family)} with a thread count"
            )
            rows = f"{len(kept)} of the {len(family)} table rows of this family that fit the CPU's flags"
            family = kept
        elif rule:
            narrowing = f"{_NO_FIT} ({rule}): all {len(family)} rows kept"
    tdps = [table[name] for name in family]
    tdp = statistics.median(tdps)
    return CpuTdp(
        brand,
        tdp,
        "generic",
        f"{len(family)} rows '{target} ...'",
        f"generic brand {brand!r} (no model number): median TDP of the {rows} "
        f"(spread {min(tdps):g}-{max(tdps):g} W) = {tdp:g} W",
        family,
        narrowing,
    )


def thread_power(
    tdp: CpuTdp, threads: int | None = None, threads_source: str = "", flags: Collection[str] | None = None
) -> ThreadPower:
    """Watts per busy hardware thread for ``tdp``, with the low figure and where they come from.

    Args:
        tdp: the package TDP and how it was matched.
        threads: hardware threads per package when known from elsewhere (the user, or
            ``/proc/cpuinfo`` on bare metal); otherwise looked up in ``cpu_threads.csv``.
        threads_source: where ``threads`` comes from, for the note.
        flags: the CPU's flags, which narrow the family of a user TDP's brand as
            :func:`lookup_cpu_tdp` narrows a looked-up one (None: not narrowed).

    A known thread count gives TDP / threads. A generic brand (no model number) gets the median of
    TDP / threads over its family's rows that have a thread count, and its cheapest row for the low
    figure; with a user TDP it gets that TDP / the family's median thread count. When no model left
    by the instruction-set filter has a thread count, the whole family's are used (and said).
    Anything else gets :data:`DEFAULT_W_PER_THREAD`.
    """
    counts = cpu_threads_table()
    # A user TDP keeps the brand's own match for the thread count (model row or family).
    match = lookup_cpu_tdp(tdp.brand, flags=flags) if tdp.match == "override" else tdp
    if threads is None and match.match in ("exact", "model") and match.matched_name in counts:
        cores, threads, src = counts[match.matched_name]
        threads_source = f"{match.matched_name}: {cores} cores / {threads} threads per package ({src})"
    if threads is not None:
        watts = tdp.tdp_w / threads
        return ThreadPower(watts, (1 - IDLE_SHARE) * watts, threads, threads_source)
    family = _family_rows(match.family)
    which = "models of this family" + (" that fit the CPU's flags" if match.narrowed else "")
    if not family and match.narrowed:
        family = _family_rows(lookup_cpu_tdp(match.brand).family)
        which = "models of the whole family (none that fits the CPU flags has a thread count)"
    if family:
        per_thread = [tdp_w / n for tdp_w, n in family]
        lo, hi = min(per_thread), max(per_thread)
        if tdp.match == "override":
            typical = statistics.median(n for _, n in family)
            watts = tdp.tdp_w / typical
            source = f"user TDP / the median of {typical:g} threads per package of the {len(family)} {which}"
            return ThreadPower(watts, (1 - IDLE_SHARE) * min(watts, lo), None, source)
        watts = statistics.median(per_thread)
        source = (
            f"median TDP per thread of the {len(family)} {which} in cpu_threads.csv "
            f"(spread {lo:.2g}-{hi:.2g} W per thread)"
        )
        return ThreadPower(watts, (1 - IDLE_SHARE) * lo, None, source)
    watts = DEFAULT_W_PER_THREAD
    return ThreadPower(watts, (1 - IDLE_SHARE) * watts, None, DEFAULT_W_PER_THREAD_SOURCE)


def _family_rows(family: tuple[str, ...]) -> list[tuple[float, int]]:
    """(TDP, threads per package) of the family members that have a thread count."""
    table, counts = cpu_power_table(), cpu_threads_table()
    return [(table[name], counts[name][1]) for name in family if name in counts and name in table]
