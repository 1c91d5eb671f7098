"""Table 1's models in tables: the ``zoo`` command's rows, and the paper's "TDP x hours" estimates
checked against the counted work.

* :func:`zoo_rows` gives one row per model (:data:`ROW_COLUMNS`): parameters, counted inference
  FLOPs per second of audio and training FLOPs per step, and the reported schedule, with WaveFlow
  WF2 as the reference row.
* :func:`schedule_table` multiplies each reported schedule (steps) by the counted FLOPs of one
  step, and :func:`implied_utilisation` divides by what the reported GPUs could do at their fp32
  peak (``waveflow/_data/hardware/gpus.csv``) in the reported hours. A fraction far above what well-tuned
  training reaches means the hours (or the steps) cannot both be right (:func:`verdict`).
* :func:`training_cost_table` is notebook 02's per-model table, joined with what
  :mod:`~waveflow.experiments.zoo_measure` measured on this machine, and :func:`findings` says in
  one sentence per model whether the reported hours fit.

Counted FLOPs cover matrix products and convolutions only, so an implied utilisation is a lower
bound on the real arithmetic rate.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ..data import DEFAULT_SEGMENT
from ..energy import hardware
from ..measures.flops import count as count_flops
from ..model import PAPER, parameter_count
from ..train import PAPER_BATCH, PAPER_STEPS
from ..zoo import MODEL_NAMES, get_spec
from .zoo_count import GENERATOR_PART, OTHER_PART, _full, flops_per_audio_second, flops_per_step, schedule_steps

#: The reference row: WaveFlow WF2 (h = 16, r = 64), trained by Douwes et al. on 4 TITAN V for 3 M
#: steps of 8 x 16,000 samples (their section 5.1). They measured its energy and published no hours.
REFERENCE = "WF2"
REFERENCE_STEPS = PAPER_STEPS[PAPER[REFERENCE].config.res_channels]
REFERENCE_GPUS = 4
REFERENCE_CLIP_S = 10.0  # the paper's E_gen clips: 10 s at 22.05 kHz

#: GANSynth grows progressively: weighting its 13 stages by images, ~4.65 M of the 11 M images cost
#: as much as a full-resolution image, so steps x the final-stage cost over-counts by 11 / 4.65.
GANSYNTH_FULL_RESOLUTION_FRACTION = 4.65 / 11.0

#: Above this fraction of fp32 peak the reported hours are implausible for the counted work: the
#: best-tuned large training runs reach ~46 % model-FLOPs utilisation (PaLM, Chowdhery et al. 2022).
UTILISATION_MAX_PLAUSIBLE = 0.5
#: Below this, the hours are dominated by something other than the counted matrix work (evaluation,
#: sampling, data loading, idle time) or the step count is too low.
UTILISATION_LOW = 0.05


# ----------------------------------------------------------------------------------------------
# the `zoo` command's rows
ROW_COLUMNS = (
    "model",
    "params_generator",
    "params_other",
    "sample_rate",
    "audio_s_per_forward",
    "inference_gflop_per_audio_s",
    "training_gflop_per_step",
    "examples_per_step",
    "reported_steps",
    "reported_hours",
    "reported_gpus",
)


def zoo_row(name: str) -> dict[str, Any]:
    """Counted cost and reported schedule of one Table 1 model (full size, on meta)."""
    spec, model = get_spec(name), _full(name)
    parts = model.parameter_counts()
    return {
        "model": spec.name,
        "params_generator": parts[GENERATOR_PART[spec.name]],
        "params_other": parts[OTHER_PART[spec.name]] if spec.name in OTHER_PART else 0,
        "sample_rate": spec.sample_rate,
        "audio_s_per_forward": spec.audio_seconds_per_forward,
        "inference_gflop_per_audio_s": flops_per_audio_second(model) / 1e9,
        "training_gflop_per_step": flops_per_step(model) / 1e9,
        "examples_per_step": spec.examples_per_training_step,
        "reported_steps": spec.reported_steps,
        "reported_hours": spec.reported_hours,
        "reported_gpus": spec.reported_gpus,
    }


def reference_row() -> dict[str, Any]:
    """WaveFlow WF2 counted by :func:`waveflow.measures.flops.count`.

    One ``training`` count gives both figures: its forward part is the density pass, whose
    convolution work the cached synthesis repeats exactly (``waveflow.measures.flops``; both are checked
    against the same closed form in ``tests/test_flops.py``), and it takes half the time of two counts.
    """
    config = PAPER[REFERENCE].config
    counted = count_flops(config, "training", REFERENCE)
    step_seconds = PAPER_BATCH * DEFAULT_SEGMENT / 22_050
    params = parameter_count(config)
    return {
        "model": REFERENCE,
        "params_generator": params,
        "params_other": 0,
        "sample_rate": 22_050,
        "audio_s_per_forward": REFERENCE_CLIP_S,
        "inference_gflop_per_audio_s": counted.forward_flops_per_audio_second / 1e9,
        "training_gflop_per_step": counted.flops_per_audio_second * step_seconds / 1e9,
        "examples_per_step": PAPER_BATCH,
        "reported_steps": REFERENCE_STEPS,
        "reported_hours": math.nan,
        "reported_gpus": REFERENCE_GPUS,
    }


def zoo_rows(names: Iterable[str] = MODEL_NAMES, reference: bool = True, progress: bool = False) -> pd.DataFrame:
    """One row per model (:data:`ROW_COLUMNS`), WF2 last when ``reference``; names are checked first."""
    keys = [get_spec(n).name for n in names]  # unknown names fail before any counting
    items: Sequence[str] = keys + ([REFERENCE] if reference else [])
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="counting", unit="model", file=sys.stderr)
    rows = [reference_row() if key == REFERENCE else zoo_row(key) for key in items]
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


# ----------------------------------------------------------------------------------------------
# the paper's estimates against the counted work
def fp32_peak(gpu: str) -> tuple[float, str]:
    """``(TFLOP/s, source)``: fp32 peak (no tensor cores) of a GPU name, from ``waveflow/_data/hardware/gpus.csv``."""
    key = hardware.lookup_gpu(gpu).key
    table = pd.read_csv(hardware.GPUS_CSV, keep_default_na=False).set_index("key")
    if "fp32_peak_tflops" not in table.columns:
        raise ValueError(f"{hardware.GPUS_CSV}: no fp32_peak_tflops column; expected one per GPU (TFLOP/s)")
    value = table.loc[key, "fp32_peak_tflops"]
    if value == "" or not float(value) > 0:
        raise ValueError(f"{hardware.GPUS_CSV}: GPU {key!r} has fp32_peak_tflops={value!r}; expected TFLOP/s > 0")
    return float(value), str(table.loc[key, "fp32_peak_source"])


def implied_utilisation(training_flop: float, hours: float, n_gpus: int, peak_tflops: float) -> float:
    """Fraction of fp32 peak the reported hours imply: FLOPs / (GPUs x peak FLOP/s x hours x 3600)."""
    if not (hours > 0 and n_gpus >= 1 and peak_tflops > 0):
        raise ValueError(
            f"implied_utilisation: hours={hours!r}, n_gpus={n_gpus!r}, peak_tflops={peak_tflops!r}; expected all > 0"
        )
    return training_flop / (n_gpus * peak_tflops * 1e12 * hours * 3600.0)


def verdict(utilisation: float) -> str:
    """Plausibility of an implied utilisation against :data:`UTILISATION_LOW`/:data:`UTILISATION_MAX_PLAUSIBLE`."""
    if math.isnan(utilisation):
        return "not checkable: no step count published"
    if utilisation > UTILISATION_MAX_PLAUSIBLE:
        return f"implausible: above {UTILISATION_MAX_PLAUSIBLE:.0%} of fp32 peak"
    if utilisation < UTILISATION_LOW:
        return f"low: under {UTILISATION_LOW:.0%}, hours dominated by other work"
    return "plausible"


def schedule_table(names: Iterable[str] = MODEL_NAMES) -> pd.DataFrame:
    """One row per (model, stage): reported steps and hours, counted FLOPs per step and in total,
    and the fp32-peak utilisation they imply (SING's hours are split by stage in the paper)."""
    rows = []
    for name in names:
        spec, model = get_spec(name), _full(name)
        gpu = hardware.lookup_gpu(spec.gpu)
        peak, _ = fp32_peak(spec.gpu)
        steps = schedule_steps(name)
        hours = dict(spec.stage_hours) or {model._stage(None): spec.reported_hours}
        for stage, stage_hours in hours.items():
            n = steps.get(stage, math.nan)
            per_step = flops_per_step(model, stage)
            total = n * per_step
            effective = total * (GANSYNTH_FULL_RESOLUTION_FRACTION if spec.name == "gansynth" else 1.0)
            rows.append(
                {
                    "model": spec.name,
                    "stage": stage,
                    "steps": n,
                    "hours": stage_hours,
                    "n_gpus": spec.reported_gpus,
                    "gpu_variant": gpu.name,
                    "fp32_peak_tflops": peak,
                    "tflop_per_step": per_step / 1e12,
                    "training_eflop": total / 1e18,
                    "training_eflop_effective": effective / 1e18,
                    "implied_utilisation": implied_utilisation(effective, stage_hours, spec.reported_gpus, peak),
                    "implied_utilisation_naive": implied_utilisation(total, stage_hours, spec.reported_gpus, peak),
                    "max_steps_at_peak": spec.reported_gpus * peak * 1e12 * stage_hours * 3600.0 / per_step,
                }
            )
    return pd.DataFrame(rows)


def training_cost_table(
    names: Iterable[str] = MODEL_NAMES, inference: pd.DataFrame | None = None, training: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Notebook 02's second table: per model the paper's TDP x hours, the schedule's counted FLOPs,
    the implied utilisation with its verdict, counted inference FLOPs, and what was measured here."""
    stages = schedule_table(names)
    rows = []
    for name, group in stages.groupby("model", sort=False):
        spec = get_spec(name)
        full = len(group)  # a stage without steps leaves the total unknown (NaN), not 0
        eflop = group.training_eflop.sum(min_count=full)
        effective = group.training_eflop_effective.sum(min_count=full)
        peak, source = fp32_peak(spec.gpu)
        util = implied_utilisation(effective * 1e18, spec.reported_hours, spec.reported_gpus, peak)
        rows.append(
            {
                "model": name,
                "gpu": f"{spec.reported_gpus} x {group.gpu_variant.iloc[0]}",
                "hours": spec.reported_hours,
                "tdp_kwh_paper": spec.reported_kwh,
                "steps": group.steps.sum(min_count=full),
                "training_eflop": eflop,
                "training_eflop_effective": effective,
                "fp32_peak_tflops": peak,
                "fp32_peak_source": source,
                "implied_utilisation": util,
                "implied_utilisation_naive": implied_utilisation(
                    eflop * 1e18, spec.reported_hours, spec.reported_gpus, peak
                ),
                "verdict": verdict(util),
                "inference_gflop_per_audio_s": flops_per_audio_second(_full(name)) / 1e9,
            }
        )
    table = pd.DataFrame(rows)
    return _with_measurements(table, inference, training)


def _with_measurements(table: pd.DataFrame, inference: pd.DataFrame | None, training: pd.DataFrame | None):
    """Join batch-1 and best-batch energy per audio second, and energy per training example, measured here."""
    cols = ["j_per_audio_s", "j_per_audio_s_low", "j_per_audio_s_high"]
    if inference is not None and len(inference):
        b1 = inference[inference.batch == 1].groupby("model")[[*cols, "j_per_audio_s_label"]].first()
        best = inference.loc[inference.groupby("model")["j_per_audio_s"].idxmin()].set_index("model")
        best = best[["batch", *cols]].rename(columns=lambda c: f"{c}_best" if c != "batch" else "best_batch")
        table = table.join(b1, on="model").join(best, on="model")
    if training is not None and len(training):
        keep = ["j_per_example", "j_per_example_low", "j_per_example_high", "j_per_paper_step_label", "schedule_kwh"]
        last = training.drop_duplicates("model", keep="last").set_index("model")
        table = table.join(last[keep], on="model")
    for col in [*cols, "best_batch", "j_per_example", "schedule_kwh"]:
        if col not in table:
            table[col] = math.nan
    table["measured_here"] = table["j_per_audio_s"].notna()
    return table


def findings(table: pd.DataFrame, stages: pd.DataFrame | None = None) -> list[str]:
    """One sentence per model, from :func:`training_cost_table` (and SING's stages from
    :func:`schedule_table`), saying whether the reported hours fit the counted work."""
    out = []
    for r in table.itertuples(index=False):
        head = f"**{r.model}** ({r.gpu}, {r.hours:g} h, {r.fp32_peak_tflops:g} TFLOP/s fp32 each)"
        if math.isnan(r.implied_utilisation):
            row = stages[stages.model == r.model].iloc[0] if stages is not None else None
            cap = (
                f"; at 100 % of peak it would allow at most {row.max_steps_at_peak:,.0f} steps"
                if row is not None
                else ""
            )
            out.append(f"{head}: no step count is published, so the hours cannot be checked{cap}.")
            continue
        text = (
            f"{head}: {r.training_eflop_effective:.2f} EFLOP counted for the schedule imply "
            f"{r.implied_utilisation:.0%} of peak, {r.verdict}"
        )
        if r.implied_utilisation_naive != r.implied_utilisation:
            text += f" (steps x final-stage cost would imply {r.implied_utilisation_naive:.0%}, an over-count)"
        if stages is not None and (stages.model == r.model).sum() > 1:
            parts = stages[stages.model == r.model]
            text += "; by stage " + ", ".join(
                f"{s.stage} {s.implied_utilisation:.0%} ({verdict(s.implied_utilisation).split(':')[0]})"
                for s in parts.itertuples()
            )
        out.append(text + ".")
    return out + [_summary(table, stages)]


def _summary(table: pd.DataFrame, stages: pd.DataFrame | None) -> str:
    """One closing sentence grouping the models by verdict (and naming implausible SING-like stages)."""
    groups: dict[str, list[str]] = {}
    for r in table.itertuples(index=False):
        groups.setdefault(r.verdict.split(":")[0], []).append(r.model)
    parts = [f"{kind}: {', '.join(models)}" for kind, models in groups.items()]
    text = "In short, " + "; ".join(parts)
    if stages is not None:
        staged = stages.groupby("model").stage.transform("count") > 1
        bad = stages[staged & (stages.implied_utilisation > UTILISATION_MAX_PLAUSIBLE)]
        if len(bad):
            named = ", ".join(f"{s.model}'s {s.stage} stage ({s.implied_utilisation:.0%})" for s in bad.itertuples())
            text += f". By stage, {named} is above the plausible band: too few hours for its steps"
    return text + "."
