"""One helper for every figure: fixed style, PDF + PNG, and the numbers behind the plot as CSV.

Notebooks call :func:`save_figure` so that each artefact ``figures/NN_name`` exists in three files
that always agree: the vector figure for the paper, a PNG for the README, and the CSV a reviewer
can check without re-running anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..files import atomic_write
from ..paths import FIGURES, RESULTS

STYLE = {"context": "paper", "style": "whitegrid", "font_scale": 1.1}


def set_style() -> None:
    """The house style for all figures (seaborn paper context, white grid).

    Also picks the backend: ``MPLBACKEND`` when set (Jupyter's inline backend sets it), else Agg,
    so that notebooks run headless under papermill and CI.
    """
    matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
    sns.set_theme(**STYLE)


def save_figure(fig: Figure, name: str, data: pd.DataFrame, directory: Path | str = FIGURES) -> dict[str, Path]:
    """Write ``name.pdf``, ``name.png`` (150 dpi) and ``name.csv`` atomically.

    Args:
        fig: the matplotlib figure.
        name: ``NN_name`` (the notebook number and artefact name), without extension.
        data: the numbers plotted, one tidy row per plotted point/bar.
        directory: output folder (default ``figures/``).

    Returns:
        ``{"pdf": path, "png": path, "csv": path}``.
    """
    if not name or "/" in name or name.endswith((".pdf", ".png", ".csv")):
        raise ValueError(f"save_figure: name must be a bare 'NN_name' without folder or extension, got {name!r}")
    if not isinstance(data, pd.DataFrame) or data.empty:
        raise ValueError(f"save_figure: data for {name!r} must be a non-empty DataFrame of the plotted numbers")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("pdf", "png", "csv")}
    # A fixed creation date keeps PDFs byte-stable across runs with the same numbers.
    atomic_write(
        paths["pdf"],
        suffix=".pdf",
        write=lambda p: fig.savefig(p, format="pdf", bbox_inches="tight", metadata={"CreationDate": None}),
    )
    atomic_write(
        paths["png"], suffix=".png", write=lambda p: fig.savefig(p, format="png", dpi=150, bbox_inches="tight")
    )
    atomic_write(paths["csv"], suffix=".csv", write=lambda p: data.to_csv(p, index=False))
    return paths


def save_table(table: pd.DataFrame, name: str, directory: Path | str | None = None) -> Path:
    """Write a results table as ``<directory>/<name>.csv`` atomically (default ``build/results/``).

    The tables the notebooks hand to each other (notebook 04 reads 03's, 05 reads 04's) go through
    here, so a crash mid-write never leaves a truncated CSV for the next notebook to read.
    """
    if not name or "/" in name or name.endswith(".csv"):
        raise ValueError(f"save_table: name must be a bare file stem without folder or extension, got {name!r}")
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"save_table: {name!r} must be a pandas DataFrame, got {type(table).__name__}")
    path = Path(directory if directory is not None else RESULTS) / f"{name}.csv"
    return atomic_write(path, suffix=".csv", write=lambda p: table.to_csv(p, index=False))


#: figure formats :func:`save_figure_as` writes, by the path's suffix
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def save_figure_as(fig: Figure, path: Path | str, data: pd.DataFrame) -> dict[str, Path]:
    """Write ``fig`` to ``path`` in the format its suffix names, and ``data`` beside it as CSV.

    For a figure whose name the user chooses (``waveflow pareto --out fig.png``), where
    :func:`save_figure` writes a notebook's fixed ``NN_name`` in all three files: the same house
    rules (atomic writes, 150 dpi PNG, byte-stable PDF) and the same promise that the plotted
    numbers travel with the figure (``fig.png`` -> ``fig.csv``).

    Returns:
        ``{"figure": path, "csv": path}``.

    Raises:
        ValueError: a suffix other than ``.png``, ``.pdf`` or ``.svg``; ``data`` not a DataFrame.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ValueError(f"save_figure_as: {p}: expected a file ending in {', '.join(FIGURE_SUFFIXES)}")
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"save_figure_as: data for {p} must be a DataFrame of the plotted numbers")
    fmt = suffix[1:]
    options = {"dpi": 150} if fmt == "png" else {"metadata": {"CreationDate": None}} if fmt == "pdf" else {}
    figure = atomic_write(p, suffix=suffix, write=lambda t: fig.savefig(t, format=fmt, bbox_inches="tight", **options))
    table = atomic_write(p.with_suffix(".csv"), suffix=".csv", write=lambda t: data.to_csv(t, index=False))
    return {"figure": figure, "csv": table}
