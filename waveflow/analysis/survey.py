"""Our survey of evaluation measures in generative audio papers (the data behind Figure 1).

The paper's Fig. 1 counts, over 25 papers, how often each evaluation measure is reported, quality
measures (red, left) next to complexity/performance measures (green, right): energy is never
reported. The authors did not publish their list, so ``data/survey/papers.csv`` is our own checked
survey of 30 papers (see ``data/survey/papers.md``); this module loads it and makes the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..paths import DATA

SURVEY_CSV = DATA / "survey" / "papers.csv"

QUALITY = "quality"
COMPLEXITY = "complexity"
VERIFIED_VALUES = ("yes", "partial", "no")


@dataclass(frozen=True)
class Measure:
    """One 0/1 column of the survey.

    Args:
        column: column name in ``papers.csv``.
        label: axis label in Figure 1.
        group: ``"quality"`` (of the generated audio) or ``"complexity"`` (cost and performance).
    """

    column: str
    label: str
    group: str


#: Figure 1's order: quality measures first (left, red), then complexity/performance (right, green).
MEASURES: tuple[Measure, ...] = (
    Measure("mos", "MOS", QUALITY),
    Measure("cmos_or_preference", "Other listening test", QUALITY),
    Measure("inception_score", "Inception score", QUALITY),
    Measure("fid_or_fad", "FID / FAD", QUALITY),
    Measure("ndb", "NDB", QUALITY),
    Measure("log_likelihood", "Log-likelihood", QUALITY),
    Measure("spectral_distance", "Spectral distance", QUALITY),
    Measure("pesq_or_stoi", "PESQ / STOI", QUALITY),
    Measure("other_quality", "Other objective quality", QUALITY),
    Measure("n_params", "# parameters", COMPLEXITY),
    Measure("training_time", "Training time", COMPLEXITY),
    Measure("inference_speed", "Inference speed", COMPLEXITY),
    Measure("flops", "FLOPs", COMPLEXITY),
    Measure("hardware_reported", "Hardware", COMPLEXITY),
    Measure("energy", "Energy", COMPLEXITY),
)

ID_COLUMNS = ("key", "title", "first_author", "year", "venue", "family", "domain", "evidence", "verified")
GROUP_COLORS = {QUALITY: "tab:red", COMPLEXITY: "tab:green"}


def load_survey(path: Path | str = SURVEY_CSV) -> pd.DataFrame:
    """Read and validate the survey: all columns present, measures 0/1, ``verified`` in yes/partial/no.

    Raises:
        ValueError: naming the first problem found.
    """
    table = pd.read_csv(path, dtype={"arxiv_id": str})
    needed = [*ID_COLUMNS, *(m.column for m in MEASURES)]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {needed}")
    for m in MEASURES:
        bad = table.loc[~table[m.column].isin([0, 1]), "key"].tolist()
        if bad:
            raise ValueError(f"{path}: column {m.column!r} must be 0 or 1, but is not for {bad}")
    bad = table.loc[~table["verified"].isin(VERIFIED_VALUES), "key"].tolist()
    if bad:
        raise ValueError(f"{path}: 'verified' must be one of {VERIFIED_VALUES}, but is not for {bad}")
    if table["key"].duplicated().any():
        raise ValueError(
            f"{path}: duplicate keys {table.loc[table['key'].duplicated(), 'key'].tolist()}; expected one row per paper"
        )
    return table


def count_measures(table: pd.DataFrame | None = None, verified_only: bool = False) -> pd.DataFrame:
    """Number of papers reporting each measure, in Figure 1's order.

    Args:
        table: the survey (default: :func:`load_survey`).
        verified_only: count only papers checked against their full text (``verified == "yes"``).

    Returns:
        Columns ``measure``, ``label``, ``group``, ``n_papers``, ``n_surveyed``, ``share``.
    """
    table = load_survey() if table is None else table
    if verified_only:
        table = table[table["verified"] == "yes"]
    n = len(table)
    rows = [
        {
            "measure": m.column,
            "label": m.label,
            "group": m.group,
            "n_papers": int(table[m.column].sum()),
            "n_surveyed": n,
            "share": table[m.column].sum() / n if n else 0.0,
        }
        for m in MEASURES
    ]
    return pd.DataFrame(rows)


def papers_with_training_details(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Papers that give both training hardware and training time: what the paper's Table 1 needs."""
    table = load_survey() if table is None else table
    return table[(table["training_time"] == 1) & (table["hardware_reported"] == 1)]
