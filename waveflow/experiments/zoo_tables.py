"""Table 1's models in tables: the ``zoo`` command's rows, and the paper's "TDP x hours" estimates
checked against the counted work.

* :func:`zoo_rows` gives one row per model (:data:`ROW_COLUMNS`): parameters, counted inference
  FLOPs per second of audio and training FLOPs per step, and the reported schedule, with WaveFlow
  WF2 as the reference row.
* :func:`schedule_table` multiplies each reported schedule (steps) by the counted FLOPs of one
  step, and :func:`implied_utilisation` divides by what the reported GPUs could do at their fp32
  peak (``waveflow/_data/hardware/gpus.csv``) in the reported hours, graded against what fp32 training
  reaches (:func:`verdict`: comfortable, demanding, implausible). Where the table holds both form
  factors of the reported GPU (P100 and V100: PCIe and SXM2), the utilisation under the other one's
  peak is given too (:func:`other_variant`), since the papers name only the family.
* :func:`training_cost_table` is notebook 02's per-model table, joined with what
  :mod:`~waveflow.experiments.zoo_measure` measured on this machine, and :func:`findings` says in
  one sentence per model whether the reported hours fit. A model trained in stages (SING) is judged
  by its worst stage: a stage the code's schedule cannot fit in its reported hours makes the
  schedule inconsistent with the hours, whatever the total says.

Counted FLOPs cover matrix products and convolutions only, so an implied utilisation is a lower
bound on the real arithmetic rate.
"""

from __future__ import annotations

import math
import re
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
from .zoo_count import (
    GENERATOR_PART,
    OTHER_PART,
    SING_BATCHES_PER_EPOCH,
    SING_EPOCHS,
    _full,
    flops_per_audio_second,
    flops_per_step,
    schedule_steps,
)

#: The reference row: WaveFlow WF2 (h = 16, r = 64), trained by Douwes et al. on 4 TITAN V for 3 M
#: steps of 8 x 16,000 samples (their section 5.1). They measured its energy and published no hours.
REFERENCE = "WF2"
REFERENCE_STEPS = PAPER_STEPS[PAPER[REFERENCE].config.res_channels]
REFERENCE_GPUS = 4
REFERENCE_CLIP_S = 10.0  # the paper's E_gen clips: 10 s at 22.05 kHz

#: GANSynth grows progressively: weighting its 13 stages by images, ~4.65 M of the 11 M images cost
#: as much as a full-resolution image, so steps x the final-stage cost over-counts by 11 / 4.65.
GANSYNTH_FULL_RESOLUTION_FRACTION = 4.65 / 11.0

#: Grades of an implied fp32 utilisation. These trainings (2016-2019) ran in fp32 on CUDA cores, so
#: the yardstick is what fp32 work reaches on such GPUs, not tensor-core or bf16 figures:
#:
#: * a whole well-tuned fp32 training of a convolutional network: ResNet-50 on a V100 trains at
#:   about 370 images/s x ~24.6 GFLOP per image (forward and backward), ~9 TFLOP/s, i.e. ~58 % of
#:   the V100 SXM2's 15.7 TFLOP/s;
#: * a single large fp32 matrix product (cuBLAS SGEMM of a few thousand squared): 80-90 % of peak.
#:
#: A training run also loads data, evaluates, runs the optimiser and elementwise work the counted
#: FLOPs leave out, so up to :data:`UTILISATION_COMFORTABLE` (50 %) the hours comfortably fit the
#: counted work; up to :data:`UTILISATION_DEMANDING` (80 %) they fit only a run at or beyond the
#: best-tuned fp32 CNN trainings, nearly all its time in large matrix products; above it the run
#: would have to sustain what a lone large SGEMM reaches over its whole length, which is implausible.
UTILISATION_COMFORTABLE = 0.5
UTILISATION_DEMANDING = 0.8
#: The highest plausible utilisation: the upper edge of the demanding grade.
UTILISATION_MAX_PLAUSIBLE = UTILISATION_DEMANDING
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
def _gpu_table() -> pd.DataFrame:
    return pd.read_csv(hardware.GPUS_CSV, keep_default_na=False).set_index("key")


def fp32_peak(gpu: str) -> tuple[float, str]:
    """``(TFLOP/s, source)``: fp32 peak (no tensor cores) of a GPU name, from ``waveflow/_data/hardware/gpus.csv``."""
    key = hardware.lookup_gpu(gpu).key
    table = _gpu_table()
    if "fp32_peak_tflops" not in table.columns:
        raise ValueError(f"{hardware.GPUS_CSV}: no fp32_peak_tflops column; expected one per GPU (TFLOP/s)")
    value = table.loc[key, "fp32_peak_tflops"]
    if value == "" or not float(value) > 0:
        raise ValueError(f"{hardware.GPUS_CSV}: GPU {key!r} has fp32_peak_tflops={value!r}; expected TFLOP/s > 0")
    return float(value), str(table.loc[key, "fp32_peak_source"])


def other_variant(gpu: str) -> tuple[str, str, float] | None:
    """``(name, form factor, fp32 TFLOP/s)`` of the other form factor of ``gpu``'s model in the GPU
    table, or None when the table holds only one, or none with a different fp32 peak.

    The papers name a family ("P100", "V100"), which resolves to one documented variant
    (:func:`waveflow.energy.hardware.lookup_gpu`); the PCIe and SXM2 boards of the same chip differ
    in clock and so in peak (P100 9.3 against 10.6 TFLOP/s, V100 14 against 15.7), and an implied
    utilisation scales with 1 / peak. Variants are rows whose key shares the part before the first
    ``-`` (``v100-pcie``, ``v100-sxm2``) with another form factor.
    """
    own = hardware.lookup_gpu(gpu)
    table = _gpu_table()
    peaks = pd.to_numeric(table.get("fp32_peak_tflops"), errors="coerce")
    if peaks is None:
        return None
    family = own.key.split("-")[0]
    own_peak = peaks.get(own.key)
    for key, row in table.iterrows():
        if key == own.key or key.split("-")[0] != family or row["form_factor"] == own.form_factor:
            continue
        peak = peaks[key]
        if peak > 0 and peak != own_peak:
            return str(row["name"]), str(row["form_factor"]), float(peak)
    return None


def implied_utilisation(training_flop: float, hours: float, n_gpus: int, peak_tflops: float) -> float:
    """Fraction of fp32 peak the reported hours imply: FLOPs / (GPUs x peak FLOP/s x hours x 3600)."""
    if not (hours > 0 and n_gpus >= 1 and peak_tflops > 0):
        raise ValueError(
            f"implied_utilisation: hours={hours!r}, n_gpus={n_gpus!r}, peak_tflops={peak_tflops!r}; expected all > 0"
        )
    return training_flop / (n_gpus * peak_tflops * 1e12 * hours * 3600.0)


def grade(utilisation: float) -> str:
    """One word for an implied utilisation: ``not checkable`` (NaN), ``low``, ``comfortable``,
    ``demanding`` or ``implausible`` (thresholds :data:`UTILISATION_LOW`,
    :data:`UTILISATION_COMFORTABLE`, :data:`UTILISATION_DEMANDING`)."""
    if math.isnan(utilisation):
        return "not checkable"
    if utilisation > UTILISATION_DEMANDING:
        return "implausible"
    if utilisation > UTILISATION_COMFORTABLE:
        return "demanding"
    if utilisation < UTILISATION_LOW:
        return "low"
    return "comfortable"


def verdict(utilisation: float) -> str:
    """The :func:`grade` of an implied utilisation with what it means, ``"<grade>: <why>"``.

    The grades are set by fp32 reference points, the arithmetic of the 2016-2019 trainings judged
    here: fp32 ResNet-50 training on a V100 runs at ~9 TFLOP/s, ~58 % of its 15.7 TFLOP/s peak,
    and large fp32 SGEMMs reach 80-90 %. So <= 50 % is comfortable, 50-80 % demanding (as
    efficient as the best fp32 CNN trainings or more), and > 80 % implausible for a whole run.
    """
    why = {
        "not checkable": "no step count published",
        "low": f"under {UTILISATION_LOW:.0%} of fp32 peak, hours dominated by other work",
        "comfortable": f"at most {UTILISATION_COMFORTABLE:.0%} of fp32 peak",
        "demanding": (
            f"{UTILISATION_COMFORTABLE:.0%}-{UTILISATION_DEMANDING:.0%} of fp32 peak, "
            "where a well-tuned fp32 CNN training reaches ~58%"
        ),
        "implausible": f"above {UTILISATION_DEMANDING:.0%} of fp32 peak, more than large fp32 matrix products sustain",
    }
    kind = grade(utilisation)
    return f"{kind}: {why[kind]}"


def _schedule_source(name: str, stage: str) -> str:
    """Where a stage's step count comes from (SING's from the code's epochs and an assumed split size)."""
    spec = get_spec(name)
    if spec.name == "sing":
        return (
            f"the code's {SING_EPOCHS[stage]} epochs x ~{SING_BATCHES_PER_EPOCH} batches of {spec.batch_size}, "
            "the batches per epoch resting on an assumed NSynth split size"
        )
    return "reported steps" if spec.reported_steps is not None else "no step count published"


def schedule_table(names: Iterable[str] = MODEL_NAMES) -> pd.DataFrame:
    """One row per (model, stage): reported steps and hours, counted FLOPs per step and in total,
    and the fp32-peak utilisation they imply (SING's hours are split by stage in the paper), also
    under the other form factor's peak where the GPU table has one (``*_other_variant``, NaN if not)."""
    rows = []
    for name in names:
        spec, model = get_spec(name), _full(name)
        gpu = hardware.lookup_gpu(spec.gpu)
        peak, _ = fp32_peak(spec.gpu)
        alt = other_variant(spec.gpu)
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
                    "form_factor": gpu.form_factor,
                    **_other_columns(alt, effective, stage_hours, spec.reported_gpus),
                    "schedule_source": _schedule_source(spec.name, stage),
                }
            )
    return pd.DataFrame(rows)


def _other_columns(alt: tuple[str, str, float] | None, flop: float, hours: float, n_gpus: int) -> dict[str, Any]:
    """The ``*_other_variant`` columns: the other form factor and the utilisation under its peak."""
    if alt is None:
        return {
            "gpu_other_variant": "",
            "form_factor_other_variant": "",
            "fp32_peak_tflops_other_variant": math.nan,
            "implied_utilisation_other_variant": math.nan,
        }
    name, form, peak = alt
    return {
        "gpu_other_variant": name,
        "form_factor_other_variant": form,
        "fp32_peak_tflops_other_variant": peak,
        "implied_utilisation_other_variant": implied_utilisation(flop, hours, n_gpus, peak),
    }


#: Columns of :func:`training_cost_table` about the other form factor of the reported GPU, after all others.
FORM_FACTOR_COLUMNS = (
    "form_factor",
    "gpu_other_variant",
    "form_factor_other_variant",
    "fp32_peak_tflops_other_variant",
    "implied_utilisation_other_variant",
    "verdict_other_variant",
)


def _model_verdict(total: float, stages: pd.DataFrame) -> str:
    """:func:`verdict` of the total, unless a stage of a staged model is implausible: then the
    code's schedule does not fit the paper's hours for that stage, which the total would hide."""
    if len(stages) > 1:
        bad = stages[stages.implied_utilisation > UTILISATION_DEMANDING]
        if len(bad):
            worst = bad.loc[bad.implied_utilisation.idxmax()]
            return (
                f"inconsistent with the code's schedule: the {worst.stage} stage would need "
                f"{worst.implied_utilisation:.0%} of fp32 peak in its {worst.hours:g} h"
            )
    return verdict(total)


def training_cost_table(
    names: Iterable[str] = MODEL_NAMES, inference: pd.DataFrame | None = None, training: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Notebook 02's second table: per model the paper's TDP x hours, the schedule's counted FLOPs,
    the implied utilisation with its verdict (and under the other form factor's peak), counted
    inference FLOPs, and what was measured here."""
    stages = schedule_table(names)
    rows = []
    for name, group in stages.groupby("model", sort=False):
        spec = get_spec(name)
        full = len(group)  # a stage without steps leaves the total unknown (NaN), not 0
        eflop = group.training_eflop.sum(min_count=full)
        effective = group.training_eflop_effective.sum(min_count=full)
        peak, source = fp32_peak(spec.gpu)
        util = implied_utilisation(effective * 1e18, spec.reported_hours, spec.reported_gpus, peak)
        alt = _other_columns(other_variant(spec.gpu), effective * 1e18, spec.reported_hours, spec.reported_gpus)
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
                "verdict": _model_verdict(util, group),
                "inference_gflop_per_audio_s": flops_per_audio_second(_full(name)) / 1e9,
                "form_factor": group.form_factor.iloc[0],
                **alt,
                "verdict_other_variant": verdict(alt["implied_utilisation_other_variant"])
                if alt["gpu_other_variant"]
                else "",
            }
        )
    table = _with_measurements(pd.DataFrame(rows), inference, training)
    added = [c for c in FORM_FACTOR_COLUMNS if c in table]
    return table[[c for c in table.columns if c not in added] + added]  # the form-factor columns last


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


def _if_other(row: Any) -> str:
    """``" (29% if Tesla P100 SXM2 at 10.6 TFLOP/s)"``, with the grade when it differs; "" without one."""
    u2 = getattr(row, "implied_utilisation_other_variant", math.nan)
    if not isinstance(u2, float) or math.isnan(u2):
        return ""
    u = row.implied_utilisation
    changed = f", {grade(u2)}" if grade(u2) != grade(u) else ""
    return f" ({u2:.0%} if {row.form_factor_other_variant} at {row.fp32_peak_tflops_other_variant:g} TFLOP/s{changed})"


def _near_boundary(utilisation: float) -> str:
    """A caveat when a utilisation is within 5 points of a grade boundary."""
    for edge in (UTILISATION_COMFORTABLE, UTILISATION_DEMANDING):
        if abs(utilisation - edge) < 0.05:
            return f"; within 5 points of the {edge:.0%} boundary, so the grade is only as firm as the step count"
    return ""


def findings(table: pd.DataFrame, stages: pd.DataFrame | None = None) -> list[str]:
    """One sentence per model, from :func:`training_cost_table` (and SING's stages from
    :func:`schedule_table`), saying how the reported hours fit the counted work: the graded
    verdict, the utilisation under the other form factor's peak, and each stage of a staged model."""
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
        staged = r.verdict.startswith("inconsistent")
        text = (
            f"{head}: {r.training_eflop_effective:.2f} EFLOP counted for the schedule imply "
            f"{r.implied_utilisation:.0%} of peak{' in total' if staged else ''}{_if_other(r)}"
        )
        if staged:
            text += f", {grade(r.implied_utilisation)} in total, but {r.verdict}"
        else:
            text += f", {r.verdict}{_near_boundary(r.implied_utilisation)}"
        if r.implied_utilisation_naive != r.implied_utilisation:
            text += f" (steps x final-stage cost would imply {r.implied_utilisation_naive:.0%}, an over-count)"
        if stages is not None and (stages.model == r.model).sum() > 1:
            parts = stages[stages.model == r.model]
            text += "; by stage " + ", ".join(_stage_text(s) for s in parts.itertuples())
        out.append(text + ".")
    return out + [_summary(table, stages)]


def _stage_text(s: Any) -> str:
    """``"autoencoder 89% (78% if SXM2; implausible)"``."""
    u2 = getattr(s, "implied_utilisation_other_variant", math.nan)
    alt = f"{u2:.0%} if {s.form_factor_other_variant}; " if isinstance(u2, float) and not math.isnan(u2) else ""
    return f"{s.stage} {s.implied_utilisation:.0%} ({alt}{grade(s.implied_utilisation)})"


def _summary(table: pd.DataFrame, stages: pd.DataFrame | None) -> str:
    """One closing sentence grouping the models by verdict, naming any stage whose hours the code's
    schedule cannot fit, and saying which verdicts move with the GPU's form factor."""
    groups: dict[str, list[str]] = {}
    for r in table.itertuples(index=False):
        groups.setdefault(r.verdict.split(":")[0], []).append(r.model)
    parts = [f"{kind}: {', '.join(models)}" for kind, models in groups.items()]
    text = "In short, " + "; ".join(parts)
    if stages is not None:
        staged = stages.groupby("model").stage.transform("count") > 1
        bad = stages[staged & (stages.implied_utilisation > UTILISATION_DEMANDING)]
        for s in bad.itertuples():
            steps = f"its {s.steps:,.0f} steps" if hasattr(s, "steps") and not math.isnan(s.steps) else "its steps"
            source = f" ({s.schedule_source})" if getattr(s, "schedule_source", "") else ""
            gpus = f" of {s.n_gpus} x {re.sub(r' [(].*[)]$', '', s.gpu_variant)}" if hasattr(s, "gpu_variant") else ""
            u2 = getattr(s, "implied_utilisation_other_variant", math.nan)
            alt = (
                f"; {u2:.0%} ({grade(u2)}) if the boards were {s.form_factor_other_variant}"
                if isinstance(u2, float) and not math.isnan(u2)
                else ""
            )
            text += (
                f". By stage, {s.model}'s {s.stage} stage would need {s.implied_utilisation:.0%} of the fp32 "
                f"peak{gpus} to fit {steps} in the paper's {s.hours:g} h{source}, above the "
                f"{UTILISATION_DEMANDING:.0%} that large fp32 matrix products reach{alt}: the code's schedule and "
                "the reported hours are inconsistent"
            )
    moved = [
        f"{r.model} ({grade(r.implied_utilisation)} -> {grade(r.implied_utilisation_other_variant)} "
        f"if {r.form_factor_other_variant})"
        for r in table.itertuples(index=False)
        if isinstance(getattr(r, "implied_utilisation_other_variant", None), float)
        and not math.isnan(r.implied_utilisation_other_variant)
        and grade(r.implied_utilisation) != grade(r.implied_utilisation_other_variant)
    ]
    if moved:
        text += ". The form factor changes the grade of " + ", ".join(moved)
    return text + "."
