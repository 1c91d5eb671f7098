"""From kWh to grams of CO2-equivalent: bundled grid intensities and PUE presets.

The paper reports energy, but Carbontracker (which it used) also prints gCO2e, and both depend on two
choices that change results by large factors: the grid's carbon intensity and the data centre's PUE.
This module makes them explicit, with a stated source for every number, and never fetches anything
(``waveflow/_data/carbon/intensity.csv`` ships with the package; see its README).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import PACKAGE_DATA

if TYPE_CHECKING:  # pandas only for the table helpers; the meter reads the CSV without it
    import pandas as pd

INTENSITY_CSV = PACKAGE_DATA / "carbon" / "intensity.csv"
INTENSITY_COLUMNS = ("code", "country", "g_per_kwh", "year", "source")

#: Carbontracker 2.x's offline fallback (IEA world average 2024), so our default matches what the
#: tool reports on a machine without network.
DEFAULT_INTENSITY_CODE = "WORLD"


@dataclass(frozen=True)
class Intensity:
    """Average carbon intensity of an area's electricity.

    Args:
        code: ISO 3166-1 alpha-2 code, ``"WORLD"`` or ``"EU28"``.
        country: area name.
        g_per_kwh: grams CO2e per kWh.
        year: year the average refers to.
        source: where the number comes from.
    """

    code: str
    country: str
    g_per_kwh: float
    year: int
    source: str


@dataclass(frozen=True)
class Pue:
    """A power usage effectiveness: facility energy / IT energy (>= 1).

    Args:
        name: preset name.
        value: the PUE.
        source: where the value comes from and who applies it.
    """

    name: str
    value: float
    source: str


PUE_PRESETS: dict[str, Pue] = {
    p.name: p
    for p in (
        Pue("none", 1.0, "no facility overhead: IT energy only, as the paper's Table 1 and the ML CO2 calculator"),
        Pue(
            "uptime-2023",
            1.58,
            "Uptime Institute 2023 global average; carbontracker 2.x multiplies every "
            "reported energy by it (constants.PUE_2023)",
        ),
        Pue(
            "uptime-2024",
            1.56,
            "Uptime Institute Global Data Center Survey 2024 (industry average PUE 1.56); the default "
            "of the Green Algorithms calculator (data/latest/defaults_PUE.csv)",
        ),
        Pue(
            "carbontracker-2020",
            1.59,
            "Uptime Institute 2020 survey; carbontracker multiplied every reported energy by it from "
            "2020-10-29 (commit ebd96ec) to 1.1.6. The paper names no version and no PUE: this is our "
            "inference for its era, and a run between 2020-05-29 and 2020-10-29 used 1.67",
        ),
        Pue("uptime-2022", 1.55, "Uptime Institute 2022 survey (carbontracker constants.PUE_2022)"),
        Pue(
            "carbontracker-2019",
            1.67,
            "carbontracker from 2020-05-29 (commit 460a861) to 2020-10-29 (Uptime Institute 2019 survey)",
        ),
    )
}

#: Energy is reported without facility overhead unless asked for: the paper's own estimates use none.
DEFAULT_PUE = "none"


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Intensity]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in INTENSITY_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(INTENSITY_COLUMNS)}")
        rows = list(reader)
    out: dict[str, Intensity] = {}
    for row in rows:
        try:
            value = float(row["g_per_kwh"])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{path}: {row['code']!r} has g_per_kwh={row['g_per_kwh']!r}; expected a number >= 0")
        code = str(row["code"]).upper()
        if code in out:
            raise ValueError(f"{path}: code {code!r} appears twice; expected one row per area")
        out[code] = Intensity(
            code=code, country=row["country"], g_per_kwh=value, year=int(row["year"]), source=row["source"]
        )
    return out


def load_intensities(path: Path | str = INTENSITY_CSV) -> pd.DataFrame:
    """The bundled intensity table as a DataFrame (one row per area)."""
    import pandas as pd

    return pd.DataFrame([i.__dict__ for i in _load(Path(path)).values()])


def carbon_intensity(code: str, path: Path | str = INTENSITY_CSV) -> Intensity:
    """Look up an area's intensity by ISO-2 code (``"fr"``, ``"US"``), ``"WORLD"`` or ``"EU28"``.

    Raises:
        ValueError: for an unknown code, listing the choices.
    """
    table = _load(Path(path))
    key = code.strip().upper().replace("-", "") if isinstance(code, str) else None
    if key not in table:
        raise ValueError(f"carbon_intensity: unknown code {code!r}; expected one of {sorted(table)}")
    return table[key]


def resolve_pue(value_or_name: str | float | Pue) -> Pue:
    """A :class:`Pue` from a preset name (``"uptime-2023"``) or a number >= 1.0.

    Raises:
        ValueError: for an unknown name or a number below 1 (a facility cannot use less than its IT load).
    """
    if isinstance(value_or_name, Pue):
        return value_or_name
    if isinstance(value_or_name, str):
        key = value_or_name.strip().lower()
        if key in PUE_PRESETS:
            return PUE_PRESETS[key]
        try:
            value_or_name = float(key)
        except ValueError:
            raise ValueError(
                f"resolve_pue: unknown preset {value_or_name!r}; expected one of "
                f"{sorted(PUE_PRESETS)} or a number >= 1.0"
            ) from None
    if isinstance(value_or_name, (int, float)) and not isinstance(value_or_name, bool):
        value = float(value_or_name)
        if math.isfinite(value) and value >= 1.0:
            return Pue(name=f"{value:g}", value=value, source="user-supplied value")
    raise ValueError(
        f"resolve_pue: expected a preset name {sorted(PUE_PRESETS)} or a number >= 1.0, got {value_or_name!r}"
    )


def co2e_grams(kwh: float, intensity: Intensity | float | str, pue: str | float | Pue = 1.0) -> float:
    """Grams CO2e of ``kwh`` of IT energy: kWh × PUE × intensity.

    Args:
        kwh: energy drawn by the hardware (finite, >= 0). Do not pass a value that already includes a
            PUE (Carbontracker's printed kWh does) together with ``pue`` > 1.
        intensity: an :class:`Intensity`, a code for :func:`carbon_intensity`, or g/kWh (>= 0).
        pue: a number >= 1.0 or a preset name (default 1.0, no overhead).
    """
    if not isinstance(kwh, (int, float)) or isinstance(kwh, bool) or not math.isfinite(kwh) or kwh < 0:
        raise ValueError(f"co2e_grams: kwh must be a finite number >= 0, got {kwh!r}")
    if isinstance(intensity, Intensity):
        g = intensity.g_per_kwh
    elif isinstance(intensity, str):
        g = carbon_intensity(intensity).g_per_kwh
    elif (
        isinstance(intensity, (int, float))
        and not isinstance(intensity, bool)
        and math.isfinite(intensity)
        and intensity >= 0
    ):
        g = float(intensity)
    else:
        raise ValueError(f"co2e_grams: intensity must be an Intensity, a code or g/kWh >= 0, got {intensity!r}")
    return float(kwh) * resolve_pue(pue).value * g


def co2e_table(kwh: pd.Series, codes: list[str], pues: list[str | float]) -> pd.DataFrame:
    """kg CO2e of each energy in ``kwh`` (indexed by a label) for every intensity × PUE combination.

    Returns:
        A tidy frame: one row per label × code × PUE with ``kwh``, ``g_per_kwh``, ``pue`` and ``kg_co2e``.
    """
    import pandas as pd

    rows = []
    for label, e in kwh.items():
        for code in codes:
            inten = carbon_intensity(code)
            for p in pues:
                pue = resolve_pue(p)
                rows.append(
                    {
                        kwh.index.name or "label": label,
                        "kwh": float(e),
                        "intensity": inten.code,
                        "g_per_kwh": inten.g_per_kwh,
                        "intensity_year": inten.year,
                        "pue_name": pue.name,
                        "pue": pue.value,
                        "kg_co2e": co2e_grams(float(e), inten, pue) / 1000,
                    }
                )
    return pd.DataFrame(rows)


def resolve(intensity: Any = None, pue: Any = None) -> tuple[Intensity, Pue]:
    """``(Intensity, Pue)`` from codes, names, values or ready objects; None picks the defaults.

    ``intensity`` is a code (``"FR"``), an :class:`Intensity`, or None for
    :data:`DEFAULT_INTENSITY_CODE`; ``pue`` is a preset name, a number >= 1, a :class:`Pue`, or None
    for :data:`DEFAULT_PUE`. Unknown codes and PUEs below 1 raise ``ValueError``.
    """
    ci = intensity if isinstance(intensity, Intensity) else carbon_intensity(intensity or DEFAULT_INTENSITY_CODE)
    return ci, resolve_pue(DEFAULT_PUE if pue is None else pue)
