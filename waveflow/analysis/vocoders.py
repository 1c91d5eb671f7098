"""Reading the vocoder table: speeds beside the published ones, and what the numbers show.

:func:`beside_published` sets the × real time measured here under the Vocos paper's protocol beside
the speeds papers print (``data/vocoders/published_speed.csv``). Raw speeds from different machines
say little, so both sides are also given relative to HiFi-GAN V1 *in the same table*, the one
comparison that survives a change of machine. :func:`findings` turns the table into sentences.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import DATA

PUBLISHED_SPEED = DATA / "vocoders" / "published_speed.csv"
REFERENCE = "hifigan-v1"


def published_speeds(path: Path | str = PUBLISHED_SPEED) -> pd.DataFrame:
    """The published speeds (see ``data/vocoders/README.md``)."""
    table = pd.read_csv(path)
    needed = {"source", "hardware", "device_kind", "protocol", "published_model", "model", "xrt"}
    if not needed <= set(table.columns):
        raise ValueError(f"{path}: expected columns {sorted(needed)}, found {list(table.columns)}")
    return table


def beside_published(table: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per published speed of a model measured here: theirs and ours, raw and relative to
    HiFi-GAN V1 in the same source (ours: the Vocos-protocol speed of this run)."""
    published = published_speeds() if published is None else published
    ours = table.set_index("model")
    rows = []
    for _, pub in published.iterrows():
        if pub["model"] not in ours.index:
            continue
        ref = published[(published["source"] == pub["source"]) & (published["hardware"] == pub["hardware"])
                        & (published["model"] == REFERENCE)]
        their_rel = float(pub["xrt"] / ref["xrt"].iloc[0]) if len(ref) else math.nan
        our_rel = float(ours.loc[pub["model"], "vocos_xrt"] / ours.loc[REFERENCE, "vocos_xrt"]) \
            if REFERENCE in ours.index else math.nan
        rows.append({
            "model": pub["model"],
            "source": pub["source"],
            "their_hardware": pub["hardware"],
            "their_protocol": pub["protocol"],
            "their_xrt": float(pub["xrt"]),
            "our_xrt": float(ours.loc[pub["model"], "vocos_xrt"]),
            "their_xrt_vs_hifigan_v1": their_rel,
            "our_xrt_vs_hifigan_v1": our_rel,
        })
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def findings(table: pd.DataFrame) -> list[str]:
    """Sentences computed from the table: the extremes, the spread of energy, how well counted FLOPs
    predict it, where the ranking is within noise, and how the energy was obtained."""
    t = table.dropna(subset=["j_per_audio_s"]).sort_values("j_per_audio_s")
    if t.empty:
        return ["No model was measured."]
    method, hardware = str(t["energy_method"].iloc[0]), str(t["hardware"].iloc[0])
    estimated = method.startswith("estimated") or ",estimated" in method
    lo, hi = t.iloc[0], t.iloc[-1]
    out = [
        f"Energy was {'estimated' if estimated else 'measured'} ({method}) on {hardware}; "
        "all models have random weights, so this is the cost of each architecture, not of a trained checkpoint.",
        f"Per second of audio at batch 1, {lo['model']} costs least ({_fmt(lo['j_per_audio_s'])} J) and "
        f"{hi['model']} most ({_fmt(hi['j_per_audio_s'])} J): a factor of "
        f"{hi['j_per_audio_s'] / lo['j_per_audio_s']:,.0f} between models that synthesise the same audio.",
    ]
    fast = t.sort_values("xrt", ascending=False)
    slower = int((t["xrt"] < 1).sum())
    out.append(
        f"Fastest: {fast.iloc[0]['model']} at {_fmt(fast.iloc[0]['xrt'])}× real time; {slower} of {len(t)} "
        "models are slower than real time here."
    )
    if len(t) >= 3:
        logs = np.log(t[["gflop_per_audio_s", "j_per_audio_s"]].clip(lower=1e-12))
        rho = logs.rank().corr().iloc[0, 1]
        jpg = t["j_per_audio_s"] / t["gflop_per_audio_s"]
        best, worst = t.loc[jpg.idxmin()], t.loc[jpg.idxmax()]
        out.append(
            f"Counted FLOPs rank the energy with Spearman ρ = {rho:.2f}; energy per counted GFLOP still ranges from "
            f"{_fmt(jpg.min())} J ({best['model']}) to {_fmt(jpg.max())} J ({worst['model']}), a factor of "
            f"{jpg.max() / jpg.min():.0f}: FLOPs alone misjudge models whose work is sequential or not matrix "
            "products."
        )
    ref = t[t["model"] == REFERENCE]
    if len(ref):
        cheaper = t[t["relative_energy_high"] < 1]["model"].tolist()
        tied = t[(t["relative_energy_low"] <= 1) & (t["relative_energy_high"] >= 1) & (t["model"] != REFERENCE)]
        out.append(
            f"Against {REFERENCE} in the same run, {len(cheaper)} model(s) cost less with the whole interval below 1"
            + (f" ({', '.join(cheaper)})" if cheaper else "")
            + (f"; {', '.join(tied['model'])} cannot be told apart from it" if len(tied) else "")
            + ". Those ratios carry over to another machine far better than the joules do."
        )
    cv = t["energy_cv"].max()
    out.append(f"The trials' energy varied by at most {cv:.0%} (coefficient of variation) on this machine.")
    return out
