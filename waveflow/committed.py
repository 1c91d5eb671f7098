"""Text of the README and the docs that states numbers of the committed run, generated from its CSVs.

A number typed into prose goes stale, or is simply wrong, the day the figures are regenerated. Every
block between ``<!-- generated: NAME -->`` and ``<!-- /generated -->`` markers in the README and
``docs/`` is produced here from the committed ``figures/*.csv``; ``tests/test_docs.py`` fails when a
page and its CSVs disagree, and :func:`write_all` (run by ``make docs``) rewrites the blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .files import atomic_write
from .paths import COMMITTED_FIGURES, ROOT

#: page -> the blocks it holds
PAGES = {
    "README.md": ("provenance", "headline"),
    "docs/index.md": ("provenance", "headline"),
    "docs/results.md": ("provenance", "zoo-table", "energy-to-quality", "measured-pareto"),
}


def _sig(value: float) -> str:
    """Three significant figures, thousands separated: 486, 0.696, 13,776 -> 13,800."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = 2 - int(math.floor(math.log10(abs(value))))
    return f"{round(value, digits):,.{max(digits, 0)}f}"


def _energy_headline(frame: pd.DataFrame, quantity: str) -> tuple[str, str, str, str, str]:
    """(WF2 paper, WF2 ours with bounds, WF1-relative paper, WF1-relative ours, ours' method) of one quantity."""
    from .analysis.claims import energy_rows

    ours, paper = energy_rows(frame, quantity), energy_rows(frame, quantity, "paper")
    o = ours.loc["WF2"]
    value = f"{_sig(o['value'])} [{_sig(o['low'])}, {_sig(o['high'])}]"
    relative = " / ".join(f"{ours.loc[c, 'value'] / ours.loc['WF1', 'value']:.2f}" for c in ours.index)
    paper_relative = " / ".join(f"{paper.loc[c, 'value'] / paper.loc['WF1', 'value']:.2f}" for c in paper.index)
    return f"{paper.loc['WF2', 'value']:g}", value, paper_relative, relative, str(o["method"])


def headline(figures: Path = COMMITTED_FIGURES) -> str:
    """The paper's headline numbers beside the committed run's, as a Markdown table."""
    from .analysis.pareto import pareto_table
    from .model import PAPER, parameter_count

    counts = [parameter_count(p.config) for p in PAPER.values()]
    rows = [
        (
            "Parameters WF1–WF5 (M)",
            " / ".join(f"{p.paper_params_millions:.2f}" for p in PAPER.values()),
            " / ".join(f"{n / 1e6:.3f}" for n in counts),
            "counted on the model; the paper truncates to two decimals",
        )
    ]
    t1 = pd.read_csv(figures / "02_training_cost_estimates.csv")
    t1 = t1[t1["panel"] == "energy_kwh"]
    rows.append(
        (
            "Table 1 training energy, " + ", ".join(t1["model"]) + " (kWh)",
            " / ".join(f"{v:g}" for v in t1["energy_kwh_paper"]),
            " / ".join(f"{v:g}" for v in t1["energy_kwh"]),
            f"recomputed (GPU TDP × GPUs × hours): {int(t1['matches'].sum())} of {len(t1)} equal",
        )
    )
    specs = [
        ("E_train WF2 (kWh)", "03_waveflow_training_energy.csv", "e_train_kwh"),
        ("E_gen WF2 (Wh per 100 s)", "04_inference_energy.csv", "e_gen_wh"),
    ]
    for label, csv, quantity in specs:
        paper, ours, paper_rel, ours_rel, method = _energy_headline(pd.read_csv(figures / csv), quantity)
        rows.append((label, paper, ours, f"{method}; [low, high] of the estimate"))
        rows.append(
            (label.split(" WF2")[0] + " relative to WF1, WF1–WF5", paper_rel, ours_rel, "ratios within one run")
        )
    pareto = pd.read_csv(figures / "06_pareto_paper.csv")
    found = []
    for space, group in pareto.groupby("space", sort=False):
        table = pareto_table(group, ["one_minus_pct_mos", "energy"], "model")
        found.append(f"{space}: {', '.join(table.loc[~table['pareto_optimal'], 'model']) or 'none'}")
    rows.append(
        ("Dominated configurations (paper's Table 2)", "WF3", "; ".join(found), "computed from the paper's numbers")
    )
    lines = ["| quantity | paper | this reproduction | how ours was obtained |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {q} | {p} | {o} | {m} |" for q, p, o, m in rows])


def zoo_table(figures: Path = COMMITTED_FIGURES) -> str:
    """Table 1's models: implied utilisation and inference GFLOP per audio second, from figure 02's CSV."""
    data = pd.read_csv(figures / "02_zoo_costs.csv")
    value = data.pivot_table(index="model", columns="quantity", values="value", aggfunc="first")
    lines = ["| model | implied utilisation of fp32 peak | inference GFLOP per audio second |", "|---|---|---|"]
    for model, row in value.iterrows():
        util = row.get("implied_utilisation", math.nan)
        util_text = f"{util:.0%}" if math.isfinite(util) else "not checkable (no steps published)"
        lines.append(f"| {model} | {util_text} | {_sig(row.get('inference_gflop_per_audio_s', math.nan))} |")
    return "\n".join(lines)


def energy_to_quality(figures: Path = COMMITTED_FIGURES) -> str:
    """The committed energy-to-quality run in a few computed sentences."""
    marks = pd.read_csv(figures / "05_energy_to_quality.csv")
    last = marks.sort_values("energy_j").groupby("config").tail(1).set_index("config").sort_index()
    first = marks.sort_values("energy_j").groupby("config").head(1).set_index("config").sort_index()
    ratio_low = float((marks["energy_j_low"] / marks["energy_j"]).min())
    ratio_high = float((marks["energy_j_high"] / marks["energy_j"]).max())
    watts = float(last["energy_j"].sum() / last["wall_s"].sum())
    profile, machine = str(marks["profile"].iloc[0]), str(marks["machine"].iloc[0])
    steps = ", ".join(f"{c} {int(s):,}" for c, s in last["step"].items())
    nll = ", ".join(
        f"{c} {first.loc[c, 'heldout_nll_bits']:+.1f} → {last.loc[c, 'heldout_nll_bits']:+.2f}" for c in last.index
    )
    return "\n".join(
        [
            f"- run: profile `{profile}` on {machine}; {last['energy_j'].max():,.0f} J of training at most per "
            f"configuration, estimated at {watts:.1f} W on average (the band is the estimate's interval, "
            f"{ratio_low:.2f}–{ratio_high:.1f} × the middle, one factor shared by every curve);",
            f"- steps bought by the same joules: {steps};",
            f"- held-out NLL of the marks (bits/sample), first → last: {nll}.",
        ]
    )


def measured_pareto(figures: Path = COMMITTED_FIGURES) -> str:
    """The final ranking with its intervals, from figure 06-measured's CSV."""
    data = pd.read_csv(figures / "06_pareto_measured.csv").set_index("config").sort_index()
    if "nll_ci_low" not in data:
        return "- this figure's CSV carries no interval of the held-out NLL."
    parts = ", ".join(
        f"{c} {r.heldout_nll_bits:.2f} [{r.nll_ci_low:.2f}, {r.nll_ci_high:.2f}]" for c, r in data.iterrows()
    )
    n_clips, n_crops = int(data["n_clips"].iloc[0]), int(data["n_crops"].iloc[0])
    return (
        f"- held-out NLL of the final models on {n_crops} crops of {n_clips} held-out clips, mean [95 % interval of "
        f"a paired bootstrap over clips]: {parts};\n"
        f"- E_gen of the same models (Wh per 100 s): "
        + ", ".join(f"{c} {_sig(r.e_gen_wh)}" for c, r in data.iterrows())
        + "."
    )


def provenance(figures: Path = COMMITTED_FIGURES) -> str:
    """Which runs the committed figures come from, read from the CSVs that record it."""
    runs: dict[tuple[str, str, str], list[str]] = {}
    for path in sorted(figures.glob("[0-9][0-9]_*.csv")):
        table = pd.read_csv(path, nrows=1)
        if "profile" in table and "machine" in table:
            date = str(table["date"].iloc[0]) if "date" in table else "date not recorded"
            runs.setdefault((str(table["profile"].iloc[0]), str(table["machine"].iloc[0]), date), []).append(path.stem)
    if not runs:
        return "The committed figures' CSVs do not record their run."
    parts = [
        f"`{', '.join(stems)}`: profile `{profile}` on {machine}, {date}"
        for (profile, machine, date), stems in sorted(runs.items(), key=lambda kv: kv[1])
    ]
    return "Committed figures that record their run — " + "; ".join(parts) + "."


BLOCKS: dict[str, Callable[[Path], str]] = {
    "provenance": provenance,
    "headline": headline,
    "zoo-table": zoo_table,
    "energy-to-quality": energy_to_quality,
    "measured-pareto": measured_pareto,
}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->\n)(.*?)(\n<!-- /generated -->)", re.S)


def render(text: str, name: str, figures: Path = COMMITTED_FIGURES) -> str:
    """``text`` with the block ``name`` regenerated (a page without the block raises ValueError)."""
    pattern = _pattern(name)
    if not pattern.search(text):
        raise ValueError(f"no '<!-- generated: {name} -->' block; expected one, closed by '<!-- /generated -->'")
    body = BLOCKS[name](figures)
    return pattern.sub(lambda m: f"{m.group(1)}\n{body}\n{m.group(3)}", text)


def stale_blocks(root: Path = ROOT, figures: Path = COMMITTED_FIGURES) -> list[str]:
    """``page: block`` for every generated block that differs from what the CSVs give."""
    out = []
    for page, names in PAGES.items():
        text = (root / page).read_text(encoding="utf-8")
        for name in names:
            if render(text, name, figures) != text:
                out.append(f"{page}: {name}")
    return out


def write_all(root: Path = ROOT, figures: Path = COMMITTED_FIGURES) -> list[str]:
    """Regenerate every block of every page; returns the pages that changed."""
    changed = []
    for page, names in PAGES.items():
        path = root / page
        text = original = path.read_text(encoding="utf-8")
        for name in names:
            text = render(text, name, figures)
        if text != original:
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
            changed.append(page)
    return changed
