"""One energy record for a run that spanned several processes, GPUs and nodes.

A distributed run is metered piecewise, so that every device is read by exactly one process: each
rank meters its own GPU, and local rank 0 of each node meters that node's CPU and DRAM. The ranks'
:class:`~waveflow.energy.EnergyRecord` objects are then gathered on rank 0 (through the process
group, by :mod:`waveflow.train.distributed`) and merged here into one run record: the total, and one
row per device with the rank, node and method behind it.

The merge is pure bookkeeping, free of torch and of any process group, so it can be tested with
simulated ranks on simulated nodes. It guards the two ways a total goes wrong:

* **A device counted twice.** Two parts that report the same physical device count it once (the
  lower rank's reading) and the duplicate is listed. A measured counter (NVML, RAPL) reads the
  whole device, so the key is (host, kind, device); the CPU estimate (TDP x utilisation) covers
  one process tree, one torchrun agent and its workers, so its key adds the node: two
  torchrun "nodes" on one host each count their own tree.
* **A rank missing.** A rank that sent no record although it had devices to meter is named in
  ``missing_ranks`` and in the notes: the total is then a lower bound.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .record import ComponentEnergy, EnergyRecord, Interval

#: Columns of the per-device table of a merged run (``energy_devices.csv``), in order.
DEVICE_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "label",
    "rank",
    "node",
    "local_rank",
    "hostname",
    "kind",
    "device",
    "joules",
    "method",
    "counted",
    "note",
)


@dataclass(frozen=True)
class RankEnergy:
    """What one rank measured, and where it ran.

    Args:
        rank, local_rank, node: the rank's place in the job (``node`` is torchrun's group rank).
        hostname: the machine the rank ran on.
        record: its meter's record; None when it measured nothing.
        measures: the kinds it was responsible for (``("gpu",)``, ``("gpu", "cpu")``, ``()``); a
            rank with an empty tuple and no record is expected, one with kinds and no record is missing.
        carbontracker: summary of what the node's Carbontracker reported (local rank 0 only), e.g.
            ``{"energy_kwh": ..., "method": ..., "notes": [...]}``.
        reason: why ``record`` is None when it should not be (e.g. the meter failed to start).
    """

    rank: int
    local_rank: int
    node: int
    hostname: str
    record: EnergyRecord | None
    measures: tuple[str, ...] = ()
    carbontracker: dict[str, Any] | None = None
    reason: str = ""


@dataclass(frozen=True)
class DeviceEnergy:
    """One device of a merged run; ``counted`` is False for a duplicate reading left out of the total."""

    rank: int
    node: int
    local_rank: int
    hostname: str
    kind: str
    device: str
    joules: float
    method: str
    counted: bool
    note: str = ""


@dataclass
class MergedEnergy:
    """The run's record (every device once) and the device table it was summed from."""

    record: EnergyRecord
    devices: list[DeviceEnergy]
    world_size: int
    nodes: int
    missing_ranks: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def energy_j(self) -> float:
        """Total joules without PUE over the counted devices."""
        return self.record.energy_j

    def rows(self) -> list[dict[str, Any]]:
        """The device table as rows of :data:`DEVICE_COLUMNS`."""
        return [
            {
                "timestamp": self.record.timestamp,
                "label": self.record.label,
                "rank": d.rank,
                "node": d.node,
                "local_rank": d.local_rank,
                "hostname": d.hostname,
                "kind": d.kind,
                "device": d.device,
                "joules": d.joules,
                "method": d.method,
                "counted": d.counted,
                "note": d.note,
            }
            for d in self.devices
        ]


def device_key(part: RankEnergy, component: ComponentEnergy) -> tuple[Any, ...]:
    """Identity of the physical thing a reading covers (see the module docstring for why)."""
    host = part.hostname or f"node {part.node}"
    if component.method.startswith("estimated:"):  # a process tree's share, one per torchrun agent
        return (host, part.node, component.kind, component.device)
    return (host, component.kind, component.device)


def _check_parts(parts: list[RankEnergy], world_size: int) -> None:
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"merge_records: world_size={world_size!r}; expected a positive integer")
    seen: set[int] = set()
    for p in parts:
        if not 0 <= p.rank < world_size:
            raise ValueError(
                f"merge_records: rank {p.rank} outside the world of size {world_size}; expected 0..{world_size - 1}"
            )
        if p.rank in seen:
            raise ValueError(f"merge_records: rank {p.rank} sent two records; expected one per rank")
        seen.add(p.rank)


def _ranks_label(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ",".join(str(r) for r in ranks)


def _merged_notes(parts: list[RankEnergy]) -> list[str]:
    """Each distinct note once, prefixed by the ranks that wrote it (in first-seen order)."""
    by_text: dict[str, list[int]] = {}
    for p in parts:
        for note in p.record.notes if p.record is not None else ():
            by_text.setdefault(note, []).append(p.rank)
    return [f"[{_ranks_label(ranks)}] {text}" for text, ranks in by_text.items()]


def _merged_sections(parts: list[RankEnergy], counted_kinds: dict[int, set[str]]) -> list[Interval]:
    """Sections with the same label summed over ranks (earliest start, latest end), counting for
    each rank only the kinds in which it had a counted device."""
    merged: dict[str, Interval] = {}
    for p in parts:
        if p.record is None:
            continue
        for s in p.record.sections:
            joules = {k: v for k, v in s.joules.items() if k in counted_kinds.get(p.rank, set())}
            if s.label not in merged:
                merged[s.label] = Interval(s.label, s.start_s, s.end_s, dict(joules))
                continue
            m = merged[s.label]
            for k, v in joules.items():
                m.joules[k] = m.joules.get(k, 0.0) + v
            merged[s.label] = Interval(s.label, min(m.start_s, s.start_s), max(m.end_s, s.end_s), m.joules)
    return list(merged.values())


def _carbontracker_notes(parts: list[RankEnergy]) -> list[str]:
    notes = []
    for p in parts:
        ct = p.carbontracker
        if not ct:
            continue
        kwh = ct.get("energy_kwh")
        figure = f"{kwh:.4g} kWh incl. PUE ({ct.get('method', '')})" if isinstance(kwh, float) else "no figure"
        notes.append(
            f"carbontracker on node {p.node} ({p.hostname or 'unknown host'}): {figure}; it meters only "
            f"node {p.node}'s devices, so it is not the run's total"
            + (f" ({'; '.join(ct['notes'])})" if ct.get("notes") else "")
        )
    return notes


def merge_records(parts: Iterable[RankEnergy | None], world_size: int, label: str = "") -> MergedEnergy:
    """Merge the ranks' records into one run record in which every device is counted once.

    Args:
        parts: one :class:`RankEnergy` per rank that answered (None entries, ranks that could not
            even send a part, are allowed and reported missing like absent ranks).
        world_size: the number of ranks of the job; ranks ``0..world_size-1`` are expected.
        label: label of the merged record (default: the lowest rank's label).

    Returns:
        A :class:`MergedEnergy`; its ``record`` can go to :func:`~waveflow.energy.append_record`
        like any meter's. Conversion factors (PUE, carbon intensity) are the lowest rank's; a
        rank that used other factors is named in the notes.

    Raises:
        ValueError: a rank outside ``0..world_size-1``, or two parts for one rank.
    """
    present = sorted((p for p in parts if p is not None), key=lambda p: p.rank)
    _check_parts(present, world_size)
    by_rank = {p.rank: p for p in present}
    missing = [r for r in range(world_size) if r not in by_rank or (by_rank[r].record is None and by_rank[r].measures)]
    recorded = [p for p in present if p.record is not None]
    devices, components, duplicates, counted_kinds = _count_devices(recorded)
    nodes = sorted({p.node for p in present})
    notes = _run_notes(present, recorded, by_rank, missing, duplicates, world_size, len(nodes))
    record = _merged_record(label, present, recorded, components, counted_kinds, notes)
    return MergedEnergy(record, devices, world_size, len(nodes), missing, duplicates)


def _count_devices(
    recorded: list[RankEnergy],
) -> tuple[list[DeviceEnergy], list[ComponentEnergy], list[str], dict[int, set[str]]]:
    """Every rank's readings, each physical device (:func:`device_key`) counted once, by the lowest
    rank that read it.

    Returns ``(devices, components, duplicates, counted_kinds)``: the device table (duplicates
    included, marked not counted), the counted components (device names tagged with node and rank),
    one line per duplicate reading, and for each rank the kinds in which it had a counted device.
    """
    devices: list[DeviceEnergy] = []
    components: list[ComponentEnergy] = []
    first_reader: dict[tuple[Any, ...], int] = {}
    duplicates: list[str] = []
    counted_kinds: dict[int, set[str]] = {}
    for p in recorded:
        for c in p.record.components:
            key = device_key(p, c)
            counted = key not in first_reader
            note = ""
            if counted:
                first_reader[key] = p.rank
                counted_kinds.setdefault(p.rank, set()).add(c.kind)
                components.append(
                    replace(c, device=f"{c.device} [node {p.node}, rank {p.rank}]")  # scope and bounds kept
                )
            else:
                note = f"also read by rank {first_reader[key]}; counted once"
                duplicates.append(
                    f"{c.kind} {c.device} on node {p.node}: read by ranks {first_reader[key]} and {p.rank}"
                )
            devices.append(
                DeviceEnergy(
                    p.rank, p.node, p.local_rank, p.hostname, c.kind, c.device, c.joules, c.method, counted, note
                )
            )
    return devices, components, duplicates, counted_kinds


def _run_notes(
    present: list[RankEnergy],
    recorded: list[RankEnergy],
    by_rank: dict[int, RankEnergy],
    missing: list[int],
    duplicates: list[str],
    world_size: int,
    n_nodes: int,
) -> list[str]:
    """The merged record's notes: how the run was metered, the missing ranks, GPUs that were to be
    read and were not, duplicate readings, Carbontracker's per-node figures and the ranks' own notes."""
    notes = [
        f"merged over {world_size} rank(s) on {n_nodes} node(s), {len(recorded)} with devices to meter: each "
        "rank metered its own GPU, local rank 0 of each node its CPU and DRAM"
    ]
    for r in missing:
        p = by_rank.get(r)
        where = f" (node {p.node})" if p is not None else ""
        why = f": {p.reason}" if p is not None and p.reason else ""
        notes.append(f"rank {r}{where} sent no energy record{why}; its devices are not in the total (a lower bound)")
    for p in present:
        if p.record is not None and "gpu" in p.measures and not any(c.kind == "gpu" for c in p.record.components):
            notes.append(f"rank {p.rank} (node {p.node}) was to meter its GPU but read none (see its notes)")
    notes += [f"duplicate reading left out: {d}" for d in duplicates]
    notes += _carbontracker_notes(present)
    notes += _merged_notes(recorded)
    return notes


def _merged_record(
    label: str,
    present: list[RankEnergy],
    recorded: list[RankEnergy],
    components: list[ComponentEnergy],
    counted_kinds: dict[int, set[str]],
    notes: list[str],
) -> EnergyRecord:
    """The run's record over the counted ``components``, with the lowest recorded rank's conversion
    factors and provenance; ``notes`` gains a line when the ranks' factors differ and one when the
    CPU utilisation is a mean over nodes."""
    base = recorded[0].record if recorded else None
    if base is not None:
        factors = {(p.record.pue, p.record.intensity_g_per_kwh) for p in recorded}
        if len(factors) > 1:
            notes.append(f"ranks used different PUE/intensity {sorted(factors)}; rank {recorded[0].rank}'s are applied")
    cpu_parts = [p.record for p in recorded if not math.isnan(p.record.cpu_tdp_w)]
    utilisations = [r.cpu_utilisation for r in cpu_parts if not math.isnan(r.cpu_utilisation)]
    if len(utilisations) > 1:
        notes.append(f"cpu_utilisation is the mean over {len(utilisations)} node(s)")
    return EnergyRecord(
        label=label or (base.label if base else ""),
        timestamp=min((p.record.timestamp for p in recorded), default=""),
        wall_s=max((p.record.wall_s for p in recorded), default=0.0),
        components=components,
        cpu_device="; ".join(dict.fromkeys(p.record.cpu_device for p in recorded if p.record.cpu_device)),
        cpu_tdp_w=cpu_parts[0].cpu_tdp_w if cpu_parts else float("nan"),
        cpu_tdp_match=cpu_parts[0].cpu_tdp_match if cpu_parts else "",
        cpu_utilisation=sum(utilisations) / len(utilisations) if utilisations else float("nan"),
        pue=base.pue if base else 1.0,
        pue_name=base.pue_name if base else "",
        pue_source=base.pue_source if base else "",
        intensity_code=base.intensity_code if base else "",
        intensity_g_per_kwh=base.intensity_g_per_kwh if base else float("nan"),
        intensity_source=base.intensity_source if base else "",
        sections=_merged_sections(recorded, counted_kinds),
        notes=notes,
        hostname=",".join(dict.fromkeys(p.hostname for p in present if p.hostname)),
        git_commit=base.git_commit if base else "",
        project_commit=base.project_commit if base else "",
        command=base.command if base else "",
        exit_code=base.exit_code if base else None,
    )


def append_devices(merged: MergedEnergy, path: str | Path) -> Path:
    """Add the merged run's device rows to a CSV table of :data:`DEVICE_COLUMNS`.

    The file is rewritten atomically (previous rows + new rows), so a crash never leaves half a
    table; a file with other columns raises ``ValueError`` instead of being mixed.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    header = old.splitlines()[0] if old else ""
    if header and header != ",".join(DEVICE_COLUMNS):
        raise ValueError(f"append_devices: {path} has columns {header!r}; expected {','.join(DEVICE_COLUMNS)!r}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DEVICE_COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerows(merged.rows())
    text = (old if not old or old.endswith("\n") else old + "\n") + buffer.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
