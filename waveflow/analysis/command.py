"""``waveflow pareto``: the Pareto table, and its figure, of results measured anywhere.

A results CSV with one row per model and a column per measure (a quality, an energy, a latency) is
all it needs: no model, no torch, no notebook. Each objective names its direction
(``--objectives mos:max energy_j:min``), because a quality measure is as often higher-is-better (a
MOS) as lower-is-better (an NLL, a distance) and a silent default would turn the answer upside down.

The table lists every row with its front (``rank``, 1 = Pareto optimal), whether it is optimal, and
which rows dominate it (:func:`waveflow.analysis.pareto.pareto_table`). With ``--out`` the figure is
written too, with the plotted numbers as a CSV beside it: for two objectives a scatter with the front
as a staircase, for more one panel per pair of objectives coloured by optimality in all of them
(:func:`waveflow.analysis.figures.pareto.plot_pareto`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .pareto import dominated_summary, pareto_table

#: figure formats of ``--out``, by suffix
OUT_SUFFIXES = (".png", ".pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``pareto``."""
    parser.add_argument(
        "results",
        type=Path,
        metavar="RESULTS",
        help="CSV file with one row per model (give it first: --objectives takes the words after it)",
    )
    parser.add_argument(
        "--objectives",
        nargs="+",
        required=True,
        metavar="COLUMN:DIR",
        help="two or more columns to compare, each with its direction, min or max (e.g. mos:max energy_j:min); "
        "the figure has the first on x",
    )
    parser.add_argument("--label", required=True, metavar="COLUMN", help="the column naming the rows (e.g. model)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FIGURE",
        help="also write the figure, as PNG or PDF by the suffix, and the plotted numbers beside it "
        "(fig.png -> fig.csv); two objectives: a scatter with the front, more: one panel per pair",
    )
    parser.add_argument(
        "--format", choices=("table", "csv"), default="table", help="how to print the Pareto table (default: table)"
    )


def parse_objectives(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``["mos:max", "energy_j:min"]`` -> ``(["mos", "energy_j"], ["mos"])``: the columns and those to
    maximise. A column name may itself hold a colon; the direction is the part after the last one."""
    columns: list[str] = []
    maximize: list[str] = []
    for spec in specs:
        column, sep, direction = spec.rpartition(":")
        if not sep or not column:
            raise ValueError(f"--objectives {spec}: expected COLUMN:min or COLUMN:max (e.g. mos:max)")
        if direction.lower() not in ("min", "max"):
            raise ValueError(f"--objectives {spec}: direction {direction!r}; expected min or max")
        if column in columns:
            raise ValueError(f"--objectives {spec}: column {column!r} is given twice; expected each column once")
        columns.append(column)
        if direction.lower() == "max":
            maximize.append(column)
    if len(columns) < 2:
        given = " ".join(specs)
        raise ValueError(f"--objectives {given}: one objective; expected at least two (e.g. mos:max energy_j:min)")
    return columns, maximize


def read_results(path: Path) -> pd.DataFrame:
    """The results CSV, or a one-line error naming the file and what is wrong with it."""
    if not path.is_file():
        raise FileNotFoundError(f"RESULTS {path}: no such file; expected a CSV with one row per model")
    try:
        # cells as written: a missing value is reported as the "n/a" or empty cell the file holds
        table = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"RESULTS {path}: cannot be read as CSV ({reason})") from None
    if table.empty:
        raise ValueError(f"RESULTS {path}: has no rows; expected one row per model")
    return table


def checked_table(
    table: pd.DataFrame, columns: Sequence[str], label: str, specs: Sequence[str], path: Path | str
) -> pd.DataFrame:
    """``table`` with its objective columns as floats, once every column exists and every value is a
    finite number; otherwise a one-line error naming the flag, the value and what is accepted."""
    listed = ", ".join(map(str, table.columns))
    for column, spec in zip(columns, specs):
        if column not in table.columns:
            raise ValueError(f"--objectives {spec}: no column {column!r} in {path}; its columns are {listed}")
    if label not in table.columns:
        raise ValueError(f"--label {label}: no such column in {path}; its columns are {listed}")
    out = table.copy()
    for column, spec in zip(columns, specs):
        values = pd.to_numeric(out[column], errors="coerce").astype(float)
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = table[column].iloc[i]
            shown = (repr(cell) if cell.strip() else "empty") if isinstance(cell, str) else str(cell)
            raise ValueError(
                f"--objectives {spec}: {column!r} is {shown} for {table[label].iloc[i]} "
                f"(line {i + 2} of {path}); expected a finite number in every row"
            )
        out[column] = values
    return out


def front(table: pd.DataFrame, columns: Sequence[str], label: str, maximize: Sequence[str]) -> pd.DataFrame:
    """The Pareto table of the objective columns, optimal rows first (then by front), the rows of a
    front in the file's order: ``label, objectives..., pareto_optimal, rank, dominated_by``."""
    t = pareto_table(table, list(columns), label, maximize=list(maximize))
    t = t[[label, *columns, "pareto_optimal", "rank", "dominated_by"]]
    return t.sort_values("rank", kind="stable").reset_index(drop=True)


def _number(value: float) -> str:
    return f"{value:.6g}"


def format_table(t: pd.DataFrame, columns: Sequence[str], label: str, maximize: Sequence[str]) -> str:
    """The Pareto table as aligned text, one row per model: numbers right-aligned, names left-aligned,
    each objective headed with its direction."""
    cells: dict[str, list[str]] = {
        "rank": t["rank"].astype(int).astype(str).tolist(),
        "optimal": ["yes" if o else "no" for o in t["pareto_optimal"]],
        label: t[label].astype(str).tolist(),
    }
    for column in columns:
        cells[f"{column} ({'max' if column in maximize else 'min'})"] = [_number(v) for v in t[column]]
    cells["dominated by"] = [d or "-" for d in t["dominated_by"]]
    left = {"optimal", label, "dominated by"}
    widths = {h: max(len(h), *(len(v) for v in values)) for h, values in cells.items()}

    def line(values: dict[str, str]) -> str:
        parts = [v.ljust(widths[h]) if h in left else v.rjust(widths[h]) for h, v in values.items()]
        return "  ".join(parts).rstrip()

    rows = [line({h: h for h in cells})]
    rows += [line({h: cells[h][i] for h in cells}) for i in range(len(t))]
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    """Print the Pareto table of ``RESULTS`` in the chosen objectives; with ``--out``, write its figure."""
    columns, maximize = parse_objectives(args.objectives)
    out: Path | None = args.out
    if out is not None and out.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError(f"--out {out}: expected a file ending in .png or .pdf (the figure's format)")
    table = checked_table(read_results(args.results), columns, args.label, args.objectives, args.results)
    t = front(table, columns, args.label, maximize)
    if args.format == "csv":
        print(t.to_csv(index=False), end="")
    else:
        print(format_table(t, columns, args.label, maximize))
        optimal = int(t["pareto_optimal"].sum())
        print(
            f"{optimal} of {len(t)} Pareto optimal in {' '.join(args.objectives)}; {dominated_summary(t, args.label)}"
        )
    if out is not None:
        from .figures.pareto import save_pareto_figure
        from .plotting import set_style

        set_style()
        paths = save_pareto_figure(t, columns, args.label, out, maximize=maximize)
        # the table itself may be piped as CSV: the note goes to stderr then
        print(f"wrote {paths['figure']} and {paths['csv']}", file=sys.stderr if args.format == "csv" else sys.stdout)
    return 0
