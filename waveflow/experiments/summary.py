"""The measured tables brought together: held-out quality of a checkpoint, the one-row-per-config
summary that joins E_train, E_gen and quality (the input of notebook 06), and a training-energy
table rescaled to another step count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..measures import evaluation, quality
from ..model import WaveFlow, synthesize


def rescale_schedule(
    table: pd.DataFrame, model: str, from_steps: int, to_steps: int, column: str = "e_train_kwh", key: str = "model"
) -> pd.DataFrame:
    """Copy of a results table with one model's training energy scaled to another step count.

    Training energy is proportional to steps at a fixed batch and segment, so this answers "what
    if this model had been trained for ``to_steps``" without retraining.
    """
    if from_steps <= 0 or to_steps <= 0:
        raise ValueError(f"rescale_schedule: steps must be positive, got {from_steps} -> {to_steps}")
    if model not in set(table[key]):
        raise ValueError(f"rescale_schedule: {model!r} not in column {key!r}; expected one of {sorted(table[key])}")
    out = table.copy()
    out.loc[out[key] == model, column] = out.loc[out[key] == model, column] * to_steps / from_steps
    return out


def measure_quality(
    name: str, model: WaveFlow, clips: Iterable, *, sigma: float = 1.0, seed: int = 0, mos: bool = True
) -> dict[str, Any]:
    """Quality of one model on held-out clips: NLL, resynthesis distances and predicted MOS.

    Resynthesis uses the fast path; the predicted MOS is DNSMOS P.808 (``quality.PRED_MOS_LABEL``),
    not a listening test. Returns the summary row of :func:`waveflow.measures.evaluation.evaluate_model`.
    """
    rows = evaluation.evaluate_model(model, clips, synth_fn=synthesize, sigma=sigma, seed=seed, mos=mos)
    summary = evaluation.summarize(rows)
    return {
        "config": name,
        "clips": len(rows),
        "audio_s": summary["duration_s"],
        "nll_nats": summary["nll_nats_per_sample"],
        "nll_bits": summary["nll_bits_per_sample"],
        "log_mel_l1": summary["log_mel_l1"],
        "mcd_db": summary["mcd_db"],
        "pred_mos": summary.get(f"{quality.PRED_MOS_COLUMN}_resynth", math.nan),
        "pred_mos_original": summary.get(f"{quality.PRED_MOS_COLUMN}_original", math.nan),
        "pred_mos_label": quality.PRED_MOS_LABEL,
    }


def measured_summary(training: pd.DataFrame, inference: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """One row per config joining our E_train, E_gen and quality, the input of notebook 06.

    Columns: ``config, params, nll_nats, nll_bits, pred_mos, e_train_kwh, e_train_kwh_low,
    e_train_kwh_high, e_train_kwh_kind, e_gen_wh, e_gen_wh_low, e_gen_wh_high, e_gen_wh_kind``; the
    ``*_kind`` columns say how each energy was obtained and ``*_low``/``*_high`` bound it (equal to
    the value for a measurement; missing bound columns in older tables are filled with the value).
    ``pred_mos`` is DNSMOS P.808's prediction (not a listening test); notebook 06 turns it into
    ``1 - pred_mos / 5`` to mirror the paper's ``1 - %MOS`` axis.
    """
    training = _with_bounds(training, "e_train_kwh_extrapolated", "e_train_kwh")
    inference = _with_bounds(inference, "e_gen_wh", "e_gen_wh")
    t = training[["config", "params", "e_train_kwh_extrapolated", "e_train_kwh_low", "e_train_kwh_high"]]
    t = t.assign(e_train_kwh_kind=training["e_train_label"]).rename(columns={"e_train_kwh_extrapolated": "e_train_kwh"})
    g = inference[["config", "e_gen_wh", "e_gen_wh_low", "e_gen_wh_high"]]
    g = g.assign(e_gen_wh_kind=inference["e_gen_label"])
    q = quality[["config", "nll_nats", "nll_bits", "pred_mos"]]
    out = t.merge(g, on="config").merge(q, on="config")
    return out[list(SUMMARY_COLUMNS)]


#: Columns of :func:`measured_summary`, in order.
SUMMARY_COLUMNS = (
    "config",
    "params",
    "nll_nats",
    "nll_bits",
    "pred_mos",
    "e_train_kwh",
    "e_train_kwh_low",
    "e_train_kwh_high",
    "e_train_kwh_kind",
    "e_gen_wh",
    "e_gen_wh_low",
    "e_gen_wh_high",
    "e_gen_wh_kind",
)


def _with_bounds(table: pd.DataFrame, value: str, stem: str) -> pd.DataFrame:
    """``table`` with ``{stem}_low``/``_high`` columns, equal to ``value`` where a table has none."""
    out = table.copy()
    for side in ("low", "high"):
        if f"{stem}_{side}" not in out:
            out[f"{stem}_{side}"] = out[value]
    return out
