"""One or two sentences per figure saying what it shows in this run, from the figure's own CSV.

A caption typed by hand goes stale when the run changes (another machine, another profile); these are
computed from the plotted numbers, so the report page says what *this* run's figure shows: which
configuration is Pareto-optimal, which ratios came out, which batch used least energy. Pure pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .claims import energy_rows
from .pareto import pareto_table


def _ratios(values: pd.Series) -> str:
    return " / ".join(f"{v / values.iloc[0]:.2f}" for v in values)


def survey(table: pd.DataFrame) -> str:
    n = int(table["n_surveyed"].iloc[0])
    energy = int(table.loc[table["measure"] == "energy", "n_papers"].iloc[0])
    top = table.sort_values("n_papers", ascending=False).iloc[0]
    return (
        f"{energy} of the {n} surveyed papers report energy; the most reported measure is {top['label']} "
        f"({int(top['n_papers'])} of {n})."
    )


def table1(table: pd.DataFrame) -> str:
    t = table[table["panel"] == "energy_kwh"]
    equal = int(t["matches"].astype(bool).sum())
    top = t.sort_values("energy_kwh", ascending=False).iloc[0]
    return (
        f"Table 1 recomputed from the GPUs' TDPs: {equal} of {len(t)} estimates equal the paper's; the largest is "
        f"{top['model']} at {top['energy_kwh']:g} kWh. The other panels convert them to CO2e per grid and PUE."
    )


def zoo_costs(table: pd.DataFrame) -> str:
    util = table[(table["quantity"] == "implied_utilisation") & table["value"].notna()]
    parts = ", ".join(f"{r.model} {r.value:.0%}" for r in util.itertuples())
    measured = sorted(set(table.loc[table["quantity"].str.startswith("j_per_audio_s"), "model"]))
    return (
        f"Implied fp32 utilisation of the reported GPU hours: {parts or 'none computable'}. "
        f"Metered on this machine: {', '.join(measured) or 'none'} (architecture replicas, untrained)."
    )


def _energy(table: pd.DataFrame, quantity: str, what: str) -> str:
    ours, paper = energy_rows(table, quantity)["value"], energy_rows(table, quantity, "paper")["value"]
    method = str(energy_rows(table, quantity)["method"].iloc[0])
    text = f"{what} relative to WF1, WF1–WF5: {_ratios(ours)} here against the paper's {_ratios(paper)}; ours {method}."
    sweep = table[table["quantity"] == "sweep_j_per_audio_s"]
    if len(sweep):
        best = sweep.loc[sweep["value"].idxmin()]
        tied = sweep.loc[sweep["within_noise"].astype(str) == "True", "batch_size"].astype(int).tolist()
        text += (
            f" The batch sweep of {best['config']} used least energy per audio second at batch "
            f"{int(best['batch_size'])}; batches {tied} are within the noise margin of it."
        )
    return text


def training_energy(table: pd.DataFrame) -> str:
    return _energy(table, "e_train_kwh", "Extrapolated E_train")


def inference_energy(table: pd.DataFrame) -> str:
    return _energy(table, "e_gen_wh", "E_gen")


def pareto_paper(table: pd.DataFrame) -> str:
    parts = []
    for space, group in table.groupby("space", sort=False):
        result = pareto_table(group, ["one_minus_pct_mos", "energy"], "model")
        dominated = result.loc[~result["pareto_optimal"], "model"].tolist()
        parts.append(f"{space}: {', '.join(dominated) or 'none'} dominated")
    return "On the paper's own Table 2 — " + "; ".join(parts) + "."


def pareto_measured(table: pd.DataFrame) -> str:
    best = table.loc[table["heldout_nll_bits"].idxmin()]
    spread = table["heldout_nll_bits"].max() - table["heldout_nll_bits"].min()
    result = pareto_table(table, ["heldout_nll_bits", "e_gen_wh"], "config")
    optimal = result.loc[result["pareto_optimal"], "config"].tolist()
    return (
        f"Held-out NLL at the common training budget against E_gen: lowest for {best['config']} "
        f"({best['heldout_nll_bits']:.2f} bits/sample; the five span {spread:.2f} bits); Pareto-optimal in the "
        f"generation space: {', '.join(optimal)}. Quality and E_gen come from different networks (notebook 05's "
        "reduced models, notebook 04's full ones)."
    )


def energy_to_quality(table: pd.DataFrame) -> str:
    last = table.sort_values("energy_j").groupby("config").tail(1).set_index("config")
    best = last["heldout_nll_bits"].idxmin()
    steps = ", ".join(f"{c} {int(s)}" for c, s in last["step"].items())
    return (
        f"Held-out NLL against cumulative training joules under one budget ({last['energy_j'].max():,.0f} J at most): "
        f"lowest at the end for {best} ({last.loc[best, 'heldout_nll_bits']:.2f} bits/sample); steps bought: {steps}."
    )


def vocoder_energy(table: pd.DataFrame) -> str:
    t = table.sort_values("j_per_audio_s")
    lo, hi = t.iloc[0], t.iloc[-1]
    ref = str(t["reference"].iloc[0])
    below = int((t["relative_energy_high"] < 1).sum())
    return (
        f"{len(t)} models, one protocol, random weights ({t['energy_method'].iloc[0]}): J per second of audio from "
        f"{lo['j_per_audio_s']:.3g} ({lo['model']}) to {hi['j_per_audio_s']:.3g} ({hi['model']}); {below} cost less "
        f"than {ref} measured in the same run, with the whole interval below 1."
    )


#: figure stem -> caption from its CSV
CAPTIONS: dict[str, Callable[[pd.DataFrame], str]] = {
    "01_literature_survey": survey,
    "02_training_cost_estimates": table1,
    "02_zoo_costs": zoo_costs,
    "03_waveflow_training_energy": training_energy,
    "04_inference_energy": inference_energy,
    "05_energy_to_quality": energy_to_quality,
    "06_pareto_paper": pareto_paper,
    "06_pareto_measured": pareto_measured,
    "07_vocoder_energy": vocoder_energy,
}


def caption(figures: Path, stem: str) -> str:
    """The caption of ``stem`` from ``figures/<stem>.csv``; a plain count when no rule knows the figure
    or its table lacks what the rule reads (a figure is never left without a caption, and a bad table
    never stops the page)."""
    path = Path(figures) / f"{stem}.csv"
    if not path.is_file():
        return f"{stem}: no data table was written."
    table = pd.read_csv(path)
    rule = CAPTIONS.get(stem)
    if rule is not None:
        try:
            return rule(table)
        except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError):
            pass
    return f"{stem}: {len(table)} plotted values; see the data table."
