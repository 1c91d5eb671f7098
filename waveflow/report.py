"""One page that holds the whole reproduction: ``build/report/index.html``.

A reviewer opens this first. It is built from what a run left behind — the executed notebooks in
``build/notebooks/``, the tables in ``build/results/`` and the figures in ``figures/`` — and never
re-runs anything. The page is self-contained: figures and their CSVs are copied beside it, there is
no JavaScript and nothing is fetched. It holds a header (profile, machine, energy counters, software,
commit, wall time), one section per notebook (title, purpose, figures with their data, run time, a
link to the full executed notebook), the "reproduced vs. paper" table with a method label on every
row, and the notes the meter wrote (fallbacks, what was not measured).

The HTML comes from a Jinja2 template (``waveflow/_data/templates/report.html.j2``; Jinja2 ships with
nbconvert), with autoescaping on, so text from notebooks cannot inject markup.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import nbformat
import pandas as pd

from .analysis.captions import caption
from .analysis.claims import claims_table
from .energy.record import git_commit
from .files import atomic_write
from .paths import BUILD, CHECKOUT, DATA, EXECUTED, FIGURES, PACKAGE_DATA, RESULTS, profile_figures
from .runinfo import machine, read_manifest, started_at

REPORT_DIR = BUILD / "report"
TEMPLATE = "report.html.j2"
MAX_TABLE_ROWS = 15
NOT_RUN = "not run in this profile"


@dataclass
class Row:
    """One line of the "reproduced vs. paper" table."""

    quantity: str
    model: str
    paper: str
    ours: str
    unit: str
    method: str
    missing: bool = False


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}g}"
    return str(value)


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


# ------------------------------------------------------------------------------------------------
# the comparison with the paper
def parameter_rows() -> list[Row]:
    """WF1-WF5 parameter counts, recomputed from the configurations (on the meta device: no memory)."""
    from .model import PAPER, parameter_count

    rows = []
    for name, paper in PAPER.items():
        n = parameter_count(paper.config)
        same = math.floor(n / 1e4) / 100 == paper.paper_params_millions
        rows.append(
            Row(
                "parameters",
                name,
                f"{paper.paper_params_millions:.2f} M",
                f"{n:,}",
                "",
                "matches (the paper truncates to two decimals)" if same else "recomputed; differs from the paper",
            )
        )
    return rows


def table1_rows(results: Path) -> list[Row]:
    """Table 1's five training-energy estimates, as notebook 02 recomputed them."""
    paper = pd.read_csv(DATA / "paper" / "table1.csv")
    ours = _read_csv(results / "table1.csv")
    rows = []
    for r in paper.itertuples():
        if ours is None or r.model not in set(ours["model"]):
            rows.append(Row("Table 1 training energy", r.model, _fmt(float(r.energy_kwh)), NOT_RUN, "kWh", "", True))
            continue
        o = ours.set_index("model").loc[r.model]
        method = "recomputed exactly (GPU TDP × GPUs × hours)" if bool(o["matches"]) else "recomputed; differs"
        rows.append(
            Row(
                "Table 1 training energy",
                r.model,
                _fmt(float(r.energy_kwh)),
                _fmt(float(o["energy_kwh"])),
                "kWh",
                method,
            )
        )
    return rows


def _with_bounds(row: pd.Series, column: str, bounds: str) -> str:
    """The value, with its estimate's ``[low, high]`` when the table carries ``<bounds>_low/_high``."""
    value = _fmt(float(row[column]))
    low, high = f"{bounds}_low", f"{bounds}_high"
    if low in row.index and high in row.index and not (pd.isna(row[low]) or pd.isna(row[high])):
        value += f" [{_fmt(float(row[low]), 3)}, {_fmt(float(row[high]), 3)}]"
    return value


def energy_rows(results: Path) -> list[Row]:
    """E_train and E_gen of WF1-WF5: the paper's Table 2 next to this run's (extrapolated) figures."""
    table2 = pd.read_csv(DATA / "paper" / "table2.csv").set_index("model")
    specs = [
        ("E_train", "training_energy.csv", "e_train_kwh_extrapolated", "e_train_label", "e_train_kwh", "kWh"),
        ("E_gen (100 s of audio)", "inference_energy.csv", "e_gen_wh", "e_gen_label", "e_gen_wh", "Wh"),
    ]  # (quantity, results table, our column, its label, the paper's column = our bounds' stem, unit)
    rows = []
    for quantity, csv, column, label, paper_column, unit in specs:
        ours = _read_csv(results / csv)
        ours = ours.drop_duplicates("config", keep="last").set_index("config") if ours is not None else None
        for model in table2.index:
            paper = _fmt(float(table2.loc[model, paper_column]))
            if ours is None or model not in ours.index:
                rows.append(Row(quantity, model, paper, NOT_RUN, unit, "", True))
                continue
            o = ours.loc[model]
            rows.append(Row(quantity, model, paper, _with_bounds(o, column, paper_column), unit, str(o[label])))
    return rows


def comparison(results: Path) -> list[Row]:
    """Every number this reproduction compares with the paper, with its method label."""
    return parameter_rows() + table1_rows(results) + energy_rows(results)


# ------------------------------------------------------------------------------------------------
# notebooks, figures, notes
def _intro(nb: nbformat.NotebookNode) -> tuple[str, str]:
    """Title (the first ``#`` heading) and purpose (the paragraph after it) of a notebook."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.strip().splitlines()
        if lines and lines[0].startswith("# "):
            paragraph: list[str] = []
            for line in lines[1:]:
                if not line.strip():
                    if paragraph:
                        break
                    continue
                paragraph.append(line.strip())
            # Markdown emphasis and code marks would show as raw characters in the page's plain text.
            return lines[0][2:].strip(), re.sub(r"[*`]", "", " ".join(paragraph))
    return "", ""


def _duration(nb: nbformat.NotebookNode) -> float | None:
    value = nb.metadata.get("papermill", {}).get("duration")
    return float(value) if value is not None else None


def _printed(nb: nbformat.NotebookNode) -> str:
    """What the notebook printed (its findings, computed sentences and checks), stdout only."""
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                lines.append(str(output.get("text", "")).rstrip())
    return "\n".join(line for line in lines if line)


def _in_run(nb: nbformat.NotebookNode, stem: str, manifest: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether an executed notebook belongs to the run the manifest describes, and if not, why."""
    start = started_at(nb.metadata.get("papermill", {}).get("start_time"))
    if manifest is None:
        return True, ""
    run_start = started_at(manifest.get("started"))
    if stem not in manifest.get("notebooks", []):
        return False, f"not part of the run of {manifest.get('started')} (left over from an earlier run)"
    if start is not None and run_start is not None and start < run_start:
        return False, f"executed {start:%Y-%m-%d %H:%M} UTC, before this run started: the run did not reach it"
    return True, ""


def _figure(figures: Path, stem: str, out: Path) -> dict[str, Any]:
    """Copy one figure's PNG/PDF/CSV beside the page, caption it from its data, render its first rows."""
    target = out / "figures"
    target.mkdir(parents=True, exist_ok=True)
    links: dict[str, Any] = {"name": stem}
    for ext in ("png", "pdf", "csv"):
        src = figures / f"{stem}.{ext}"
        if src.is_file():
            shutil.copy2(src, target / src.name)
            links[ext] = f"figures/{src.name}"
        else:
            links[ext] = None
    data = _read_csv(figures / f"{stem}.csv")
    links["caption"] = caption(figures, stem)
    links["rows"] = 0 if data is None else len(data)
    links["shown"] = min(links["rows"], MAX_TABLE_ROWS)
    links["truncated"] = links["rows"] > MAX_TABLE_ROWS
    links["table"] = jinja2.utils.markupsafe.Markup(
        data.head(MAX_TABLE_ROWS).to_html(index=False, border=0, na_rep="—", float_format=lambda v: f"{v:.4g}")
        if data is not None
        else ""
    )
    return links


def notebook_sections(
    executed: Path, figures: Path, out: Path, manifest: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One section per executed notebook, in order; a notebook from another run is flagged ``stale``."""
    sections = []
    for path in sorted(executed.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        number = path.stem.split("_", 1)[0]
        title, purpose = _intro(nb)
        seconds = _duration(nb)
        html = path.with_suffix(".html")
        stems = sorted({p.stem for p in figures.glob(f"{number}_*.png")})
        fresh, why = _in_run(nb, path.stem, manifest)
        papermill = nb.metadata.get("papermill", {})
        sections.append(
            {
                "stem": path.stem,
                "stale": not fresh,
                "stale_why": why,
                "started": str(papermill.get("start_time") or "unknown"),
                "parameters": ", ".join(f"{k}={v!r}" for k, v in (papermill.get("parameters") or {}).items())
                or "defaults",
                "printed": _printed(nb),
                "number": number,
                "title": title or path.stem,
                "purpose": purpose,
                "duration": f"{seconds:.1f} s" if seconds is not None else "unknown",
                "seconds": seconds or 0.0,
                "html": os.path.relpath(html, out) if html.is_file() else None,
                "figures": [f for f in (_figure(figures, s, out) for s in stems) if f["png"]],
            }
        )
    return sections


def collect_notes(results: Path, rows: list[Row]) -> list[str]:
    """Distinct notes of the meter and Carbontracker in this run's tables, and what was not run."""
    notes: list[str] = []
    for csv in ("training_energy.csv", "inference_energy.csv"):
        table = _read_csv(results / csv)
        if table is None:
            notes.append(f"{csv}: not produced by this run")
            continue
        for column in ("notes", "ct_notes"):
            if column in table:
                for cell in table[column].dropna().astype(str):
                    notes += [n.strip() for n in cell.split(" | ") if n.strip()]
        for kind in ("gpu", "cpu", "dram"):
            method = f"{kind}_method"
            if method in table and table[method].fillna("").eq("").all():
                notes.append(f"{csv}: {kind.upper()} energy not measured on this machine")
    missing = sorted({f"{r.quantity} of {r.model}" for r in rows if r.missing})
    if missing:
        notes.append(f"{NOT_RUN}: " + ", ".join(missing))
    return list(dict.fromkeys(notes))


def _parameter_counts() -> dict[str, int]:
    from .model import PAPER, parameter_count

    return {name: parameter_count(p.config) for name, p in PAPER.items()}


def _header(profile: str, manifest: dict[str, Any] | None, sections: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The page's header: the run's own record when it has a manifest, else what can be read now (said so)."""
    fresh = [s for s in sections if not s["stale"]]
    total = sum(s["seconds"] for s in fresh)
    stale = len(sections) - len(fresh)
    runs = f"{len(fresh)} executed in this run, total wall time {total:.0f} s"
    if stale:
        runs += f"; {stale} left over from another run, flagged below and not counted"
    if manifest is None:
        return [
            ("profile", str(profile)),
            *machine(),
            ("git commit", git_commit(short=True, dirty=True) or "unknown"),
            ("notebooks", runs),
            ("note", "no run manifest: the machine and commit above were read when this page was built"),
        ]
    clips = manifest.get("clips")
    return [
        ("profile", str(manifest.get("profile", profile))),
        ("run started", str(manifest.get("started"))),
        ("data", f"{manifest.get('data')} ({clips if clips is not None else 'unknown'} clips)"),
        *[(k, v) for k, v in manifest.get("machine", [])],
        ("git commit", str(manifest.get("commit"))),
        ("notebooks", runs),
    ]


def build_report(
    profile: str = "quick",
    executed: Path | None = None,
    results: Path = RESULTS,
    figures: Path | None = None,
    out: Path = REPORT_DIR,
) -> Path:
    """Write ``<out>/index.html`` from a finished run and return its path.

    Args:
        profile: the parameter profile the run used (shown in the header).
        executed: folder of executed notebooks (default ``build/notebooks``).
        results: folder of result tables (default ``build/results``).
        figures: folder of the run's figures (default ``build/figures/<profile>/`` in a checkout).
        out: where the page and its copied figures go (default ``build/report``).
    """
    executed = Path(executed) if executed is not None else EXECUTED
    figures = Path(figures) if figures is not None else (profile_figures(profile) if CHECKOUT else FIGURES)
    if not executed.is_dir():
        raise FileNotFoundError(f"report: no executed notebooks in {executed}; run `make reproduce` first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(executed)
    sections = notebook_sections(executed, Path(figures), out, manifest)
    rows = comparison(Path(results))
    header = _header(profile, manifest, sections)
    claims = claims_table(Path(figures), _parameter_counts()).to_dict("records")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE_DATA / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template(TEMPLATE).render(
        title=f"profile {profile}",
        header=header,
        claims=claims,
        built=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        comparison=rows,
        notebooks=sections,
        notes=collect_notes(Path(results), rows),
    )
    return atomic_write(out / "index.html", lambda p: Path(p).write_text(html, encoding="utf-8"), suffix=".html")
