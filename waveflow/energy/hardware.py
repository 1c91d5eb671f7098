"""GPU power data and the paper's Table 1 method for estimating training energy.

Douwes et al. (§4.2) estimate the energy of a published training run the way the ML CO2 Impact
calculator does, as a worst case: the GPU's maximum power from its specification, times the number
of GPUs, times the training hours. This module holds the TDPs (``waveflow/_data/hardware/gpus.csv``, NVIDIA's
values with the calculator's next to them), resolves the names papers use ("V100", "TITAN X") to one
documented variant, and recomputes the paper's Table 1 from them.

The table is read with the standard library, so the meter can look up the TDP of a GPU it measures
(for the TDP × time check) in a core install without pandas; only the functions that return
DataFrames import pandas.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import DATA, PACKAGE_DATA

if TYPE_CHECKING:
    import pandas as pd

GPUS_CSV = PACKAGE_DATA / "hardware" / "gpus.csv"
TABLE1_CSV = DATA / "paper" / "table1.csv"

#: §4.2: SING run with Carbontracker on one TITAN X "with the same configuration as the original paper";
#: the Table 1 estimate for it is 52 kWh. Carbontracker includes its PUE in what it reports (1.59 from
#: 2020-10-29, 1.67 before); the paper names neither, so which applied is an inference.
SING_MEASURED_KWH = 64.8

GPU_COLUMNS = (
    "key",
    "name",
    "architecture",
    "form_factor",
    "year",
    "tdp_w",
    "source",
    "mlco2_tdp_w",
    "note",
    "aliases",
)
TABLE1_COLUMNS = ("model", "hardware", "n_gpus", "gpu", "power_w", "hours", "energy_kwh")

# Words that vendors and papers add or drop freely ("Tesla V100", "NVIDIA GeForce GTX TITAN X").
_NOISE_WORDS = re.compile(r"\b(nvidia|geforce|tesla|gtx)\b")


@dataclass(frozen=True)
class Gpu:
    """One GPU variant of ``gpus.csv``.

    Args:
        key: stable identifier (``"v100-sxm2"``).
        name: product name.
        tdp_w: maximum board power in W per NVIDIA's specification.
        architecture: GPU architecture (Volta, ...).
        form_factor: PCIe, SXM2, ...; SXM parts are allowed more power than PCIe cards.
        year: launch year.
        source: the NVIDIA document the TDP comes from.
        mlco2_tdp_w: the ML CO2 Impact calculator's value, ``None`` when it has no such row.
        note: why a value differs from the calculator, or which family name defaults here.
        aliases: names that resolve to this variant.
    """

    key: str
    name: str
    tdp_w: float
    architecture: str = ""
    form_factor: str = ""
    year: int | None = None
    source: str = ""
    mlco2_tdp_w: float | None = None
    note: str = ""
    aliases: tuple[str, ...] = ()


def normalise_gpu_name(name: str) -> str:
    """Canonical lookup key: lower case, vendor words and punctuation removed.

    ``"Tesla V100-SXM2-16GB"`` and ``"v100 sxm2 16gb"`` give the same key, so names copied from papers,
    ``nvidia-smi`` or ``torch.cuda.get_device_name()`` all match.
    """
    text = _NOISE_WORDS.sub(" ", name.lower())
    return re.sub(r"[^a-z0-9]", "", text)


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[tuple[Gpu, ...], dict[str, Gpu]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in GPU_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(GPU_COLUMNS)}")
        rows = list(reader)
    gpus: list[Gpu] = []
    index: dict[str, Gpu] = {}
    for row in rows:
        gpu = _gpu(path, row)
        gpus.append(gpu)
        for alias in {gpu.key, gpu.name, *gpu.aliases}:
            k = normalise_gpu_name(alias)
            if k in index and index[k].key != gpu.key:
                raise ValueError(
                    f"{path}: name {alias!r} resolves to both {index[k].key!r} and {gpu.key!r}; "
                    "expected each alias to name one GPU"
                )
            index[k] = gpu
    return tuple(gpus), index


def _gpu(path: Path, row: dict[str, str]) -> Gpu:
    """One row of ``gpus.csv`` as a :class:`Gpu` (empty cells are empty strings, as the CSV has them)."""
    try:
        tdp = float(row["tdp_w"])
    except ValueError:
        tdp = math.nan
    if not (math.isfinite(tdp) and tdp > 0):
        raise ValueError(f"{path}: GPU {row['key']!r} has tdp_w={row['tdp_w']!r}; expected a positive number of W")
    year, mlco2 = row["year"].strip(), row["mlco2_tdp_w"].strip()
    return Gpu(
        key=row["key"],
        name=row["name"],
        tdp_w=tdp,
        architecture=row["architecture"],
        form_factor=row["form_factor"],
        year=int(float(year)) if year else None,
        source=row["source"],
        mlco2_tdp_w=float(mlco2) if mlco2 else None,
        note=row["note"],
        aliases=tuple(a.strip() for a in row["aliases"].split(";") if a.strip()),
    )


def load_gpus(path: Path | str = GPUS_CSV) -> pd.DataFrame:
    """The GPU table as a DataFrame (one row per variant), validated.

    Args:
        path: CSV with the columns of ``GPU_COLUMNS`` (default ``waveflow/_data/hardware/gpus.csv``).
    """
    import pandas as pd

    gpus, _ = _load(Path(path))
    return pd.DataFrame([{**g.__dict__, "aliases": ";".join(g.aliases)} for g in gpus])


def lookup_gpu(name: str, path: Path | str = GPUS_CSV) -> Gpu:
    """Resolve a GPU name as papers, ``nvidia-smi`` or torch print it, case-insensitively.

    Family names resolve to a documented default variant (``V100`` → SXM2 300 W, ``P100`` → PCIe 250 W,
    ``TITAN X`` → Maxwell 250 W: the values of the paper's Table 1; ``A100`` → SXM4, ``H100`` → SXM).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"lookup_gpu: expected a GPU name such as 'V100', got {name!r}")
    gpus, index = _load(Path(path))
    gpu = index.get(normalise_gpu_name(name))
    if gpu is None:
        known = sorted({a for g in gpus for a in g.aliases})
        raise ValueError(f"lookup_gpu: unknown GPU {name!r}; expected one of {known}")
    return gpu


def _tdp(gpu: Gpu | str | float) -> float:
    if isinstance(gpu, Gpu):
        return gpu.tdp_w
    if isinstance(gpu, str):
        return lookup_gpu(gpu).tdp_w
    if isinstance(gpu, (int, float)) and not isinstance(gpu, bool) and math.isfinite(gpu) and gpu > 0:
        return float(gpu)
    raise ValueError(f"estimate_training_energy: gpu must be a Gpu, a GPU name or a power in W > 0, got {gpu!r}")


def estimate_training_energy(gpu: Gpu | str | float, n_gpus: int, hours: float, pue: float = 1.0) -> float:
    """Worst-case training energy in kWh: TDP × n_gpus × hours / 1000 × PUE (paper §4.2).

    It assumes every GPU draws its maximum power for the whole run and ignores CPU, DRAM and cooling
    unless a PUE is given; the paper's Table 1 uses PUE 1 (the ML CO2 calculator has no PUE either).

    Args:
        gpu: a :class:`Gpu`, a name for :func:`lookup_gpu`, or a power in W.
        n_gpus: number of GPUs (a positive integer).
        hours: wall-clock training time in hours (finite, >= 0).
        pue: data-centre power usage effectiveness (>= 1.0; default 1.0 = the paper's Table 1).
    """
    tdp = _tdp(gpu)
    if not isinstance(n_gpus, int) or isinstance(n_gpus, bool) or n_gpus < 1:
        raise ValueError(f"estimate_training_energy: n_gpus must be a positive integer, got {n_gpus!r}")
    if not isinstance(hours, (int, float)) or isinstance(hours, bool) or not math.isfinite(hours) or hours < 0:
        raise ValueError(f"estimate_training_energy: hours must be a finite number >= 0, got {hours!r}")
    if not isinstance(pue, (int, float)) or isinstance(pue, bool) or not math.isfinite(pue) or pue < 1.0:
        raise ValueError(f"estimate_training_energy: pue must be a finite number >= 1.0, got {pue!r}")
    # W × h / 1000 = kWh. Multiply first so integer inputs give the paper's printed values exactly.
    return tdp * n_gpus * hours / 1000 * pue


def load_table1(path: Path | str = TABLE1_CSV) -> pd.DataFrame:
    """The paper's Table 1 as printed (``data/paper/table1.csv``)."""
    import pandas as pd

    table = pd.read_csv(path)
    missing = [c for c in TABLE1_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(TABLE1_COLUMNS)}")
    return table


def recompute_table1(path: Path | str = TABLE1_CSV, pue: float = 1.0) -> pd.DataFrame:
    """Recompute the paper's Table 1 from ``gpus.csv`` and put it next to the printed values.

    Returns:
        One row per model with the paper's columns renamed ``power_w_paper`` / ``energy_kwh_paper``, the
        GPU variant we resolved (``gpu_variant``, ``tdp_w``), our ``energy_kwh``, and ``matches``
        (our kWh equals the printed value to the printed precision; only meaningful for ``pue=1``).
    """
    table = load_table1(path)
    rows = []
    for row in table.itertuples(index=False):
        gpu = lookup_gpu(row.gpu)
        ours = estimate_training_energy(gpu, int(row.n_gpus), float(row.hours), pue=pue)
        rows.append(
            {
                "model": row.model,
                "hardware": row.hardware,
                "n_gpus": int(row.n_gpus),
                "gpu": row.gpu,
                "gpu_variant": gpu.name,
                "power_w_paper": float(row.power_w),
                "tdp_w": gpu.tdp_w,
                "hours": float(row.hours),
                "energy_kwh_paper": float(row.energy_kwh),
                "energy_kwh": ours,
                "matches": math.isclose(ours, float(row.energy_kwh), rel_tol=0, abs_tol=1e-9),
            }
        )
    import pandas as pd

    return pd.DataFrame(rows)
