"""Energy to quality: held-out NLL against the joules spent training, every configuration under one budget.

The paper compares configurations at the end of a 3 M-step schedule nobody can repeat on a laptop.
What any machine can measure honestly is how fast each configuration turns training energy into
quality. :func:`run_budget` trains every configuration from scratch under the same energy budget
(``python -m waveflow train``'s ``energy_budget_j``) with quality marks every ``eval_every`` steps,
and collects one row per mark (:data:`COLUMNS`). The energy of a mark is training energy only
(evaluations and checkpoint writes are left out, :class:`waveflow.train.TrainingSpend`), with how
it was obtained and, for an estimate, its low/high bound.

Equal warmth: configurations are **interleaved**, not run one after another. Every configuration
first trains ``warmup_steps`` unmetered steps (a throw-away run that heats caches, the CPU clock and
the allocator), then the metered runs advance round-robin, one mark interval of one configuration at
a time, by resuming each run from its checkpoint. Each configuration's joules are therefore spread
over the whole run rather than bunched at its start or end, so a machine that warms up or
throttles as the run goes on affects all of them alike.

The derived tables answer the paper's question at every budget: the energy each configuration needed
to reach a few held-out NLL targets (:func:`energy_to_targets`), the best configuration at a few
budgets (:func:`best_at_budgets`), and where two curves cross (:func:`crossings`), in words
(:func:`findings`). Those helpers are pure pandas and take any quality and energy columns; they live
in :mod:`waveflow.analysis.curves` (usable without torch) and are re-exported here with
:data:`COLUMNS`, the marks table this module writes.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..analysis.curves import (
    COLUMNS,
    NOT_REACHED,
    at_budget,
    best_at_budgets,
    check_marks,
    crossings,
    default_budgets,
    default_targets,
    energy_to_targets,
    findings,
    nll_at,
    quality_at,
)
from ..data import DEFAULT_VALIDATION_FRACTION
from ..model import WaveFlowConfig, get_config
from ..paths import LJSPEECH_MINI, RUNS
from ..train import TrainConfig, read_metrics, train
from .metered import machine_label as machine_label
from .metered import with_provenance as with_provenance


@dataclass
class BudgetRun:
    """Options shared by every configuration of an energy-to-quality run.

    Args:
        energy_budget_j: training joules each configuration may spend (the same for all).
        eval_every: steps between quality marks.
        max_steps: a cap on the steps of one configuration, in case the budget is never reached.
        batch_size, segment, lr, seed: training options (the same for all configurations).
        val_clips, val_samples: the fixed held-out crops of the marks (clips, samples per crop).
        validation_fraction: share of the clips held out by the hash split (never trained on); the
            final ranking (:func:`heldout_per_crop`) scores every crop of every held-out clip.
        warmup_steps: unmetered steps per configuration before the metered runs (0: none).
        data: LJSpeech-format folder; out: folder holding one run folder per configuration.
        device: ``cpu``, ``cuda``, ``auto``; cpu_tdp_w: TDP for the CPU estimate (None: table).
        model_overrides: WaveFlow fields changed in every configuration, e.g. ``{"n_flows": 2,
            "n_layers": 2}`` for a CPU-sized depth. Only depth should change: h and r are what tell
            the paper's configurations apart. Empty: the paper's configurations as they are.
    """

    energy_budget_j: float
    eval_every: int = 1
    max_steps: int = 1000
    batch_size: int = 1
    segment: int = 2048
    lr: float = 2e-4
    seed: int = 0
    val_clips: int = 1
    val_samples: int = 4096
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    warmup_steps: int = 1
    data: str = str(LJSPEECH_MINI)
    out: str = str(RUNS / "05")
    device: str = "auto"
    cpu_tdp_w: float | None = None
    model_overrides: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.energy_budget_j, (int, float)) and math.isfinite(self.energy_budget_j)) or (
            self.energy_budget_j <= 0
        ):
            raise ValueError(f"ENERGY_BUDGET_J: expected a positive number of joules, got {self.energy_budget_j!r}")
        for name in ("eval_every", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.upper()}: expected a positive integer, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"WARMUP_STEPS: expected an integer >= 0, got {self.warmup_steps!r}")

    def model(self, name: str) -> WaveFlowConfig:
        """The configuration ``name`` with :attr:`model_overrides` applied (a bad field fails by name)."""
        overrides = dict(self.model_overrides or {})
        unknown = sorted(set(overrides) - {f.name for f in fields(WaveFlowConfig)})
        if unknown:
            raise ValueError(f"MODEL_OVERRIDES: unknown WaveFlow fields {unknown}; expected e.g. n_flows, n_layers")
        return get_config(name).replace(**overrides)

    def train_config(self, name: str, steps: int, out: Path, **changes: Any) -> TrainConfig:
        options: dict[str, Any] = dict(
            model=self.model(name),
            data=self.data,
            out=str(out),
            steps=steps,
            batch_size=self.batch_size,
            segment=self.segment,
            lr=self.lr,
            seed=self.seed,
            device=self.device,
            val_every=0,
            val_clips=self.val_clips,
            val_samples=self.val_samples,
            validation_fraction=self.validation_fraction,
            name=name,
            energy_budget_j=self.energy_budget_j,
            eval_every=self.eval_every,
        )
        options.update(changes)
        return TrainConfig(**options)


def run_budget(
    configs: Sequence[str],
    options: BudgetRun,
    *,
    energy_log: str | Path | bool = True,
    on_chunk: Callable[[str, int], None] | None = None,
) -> pd.DataFrame:
    """Train every configuration from scratch under ``options.energy_budget_j``, interleaved.

    Each configuration's run folder (``<out>/<config>``) is wiped first: a budget curve is only
    meaningful from step 0. Returns the marks as a :data:`COLUMNS` table, in configuration order.

    Args:
        configs: paper configuration names (WF1..WF5).
        options: the shared options.
        energy_log: where each chunk's metered record goes (True: the run folder's log).
        on_chunk: called with ``(config, step reached)`` after each chunk (progress).
    """
    if not configs:
        raise ValueError("CONFIGS: expected at least one configuration")
    root = Path(options.out)
    outs = {name: root / name for name in configs}
    for name in configs:
        options.model(name)  # an unknown name or override fails before any compute
        shutil.rmtree(outs[name], ignore_errors=True)
    if options.warmup_steps:
        for name in configs:
            warm = root / f"warmup-{name}"
            shutil.rmtree(warm, ignore_errors=True)
            cfg = options.train_config(name, options.warmup_steps, warm, energy_budget_j=None, eval_every=0)
            train(cfg, progress=False)
            shutil.rmtree(warm, ignore_errors=True)
    step = dict.fromkeys(configs, 0)
    active = list(configs)
    while active:  # round-robin: one mark interval of each configuration in turn
        for name in list(active):
            target = min(step[name] + options.eval_every, options.max_steps)
            cfg = options.train_config(name, target, outs[name])
            result = train(
                cfg,
                resume=step[name] > 0,
                progress=False,
                energy=energy_log,
                cpu_tdp_w=options.cpu_tdp_w,
            )
            step[name] = result.step
            if on_chunk is not None:
                on_chunk(name, result.step)
            if result.stopped_by.startswith("energy budget") or result.step >= options.max_steps:
                active.remove(name)
    return collect_marks(outs)


def collect_marks(runs: dict[str, Path]) -> pd.DataFrame:
    """The marks of each run folder's metrics log as a :data:`COLUMNS` table."""
    rows = []
    for name, out in runs.items():
        for m in read_metrics(out / "metrics.jsonl", kind="mark"):
            rows.append({"config": name, **{k: m.get(k) for k in COLUMNS[1:]}})
    table = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("energy_j", "energy_j_low", "energy_j_high", "wall_s", "heldout_nll_bits"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


__all__ = [
    "COLUMNS",
    "NOT_REACHED",
    "BudgetRun",
    "at_budget",
    "best_at_budgets",
    "check_marks",
    "collect_marks",
    "crossings",
    "default_budgets",
    "default_targets",
    "energy_to_targets",
    "findings",
    "machine_label",
    "nll_at",
    "quality_at",
    "run_budget",
    "with_provenance",
]


# ------------------------------------------------------------------------------------------------
# the final models: quality with its uncertainty, and generation energy of the very same networks
def heldout_per_crop(
    runs: dict[str, Path], options: BudgetRun, crop_samples: int = 22_016, max_crops_per_clip: int = 8
) -> pd.DataFrame:
    """Held-out NLL (bits/sample) of each configuration's last checkpoint on every crop of every
    held-out clip: one row per ``(config, clip, crop)``.

    Each held-out clip is cut into consecutive crops of ``crop_samples`` (whole hops), at most
    ``max_crops_per_clip`` per clip. All configurations score the very same crops, so differences
    between them can be bootstrapped in pairs (:func:`waveflow.analysis.curves.paired_bootstrap`):
    one held-out second of one clip cannot rank models that differ by a tenth of a bit.
    """
    from ..audio import whole_hops
    from ..data import LJSpeech
    from ..measures.quality import clip_nll
    from ..model import load_checkpoint
    from ..train import last_checkpoint

    n = whole_hops(crop_samples)
    held = LJSpeech(
        options.data, "validation", segment=options.segment, validation_fraction=options.validation_fraction
    )
    crops = [
        (u.id, k, u.audio[k * n : (k + 1) * n])
        for u in held.utterances()
        for k in range(min(u.audio.shape[0] // n, max_crops_per_clip))
    ]
    if not crops:
        raise ValueError(f"crop_samples={crop_samples}: no held-out clip of {options.data} is that long")
    rows = []
    for name, out in runs.items():
        model, _ = load_checkpoint(last_checkpoint(out), device="cpu")
        model.eval()
        for clip, k, audio in crops:
            nats = clip_nll(model, audio[: audio.shape[0] - audio.shape[0] % model.config.n_height])
            rows.append({"config": name, "clip": clip, "crop": k, "samples": n, "nll_bits": nats / math.log(2)})
    return pd.DataFrame(rows)


def generation_energy(runs: dict[str, Path], mels: list[torch.Tensor], device: str = "auto") -> pd.DataFrame:
    """E_gen (Wh per 100 s of audio, with the estimate's bounds) of each configuration's last
    checkpoint, the very networks whose quality :func:`heldout_per_crop` scores.

    A Pareto point is one network: pairing one model's quality with another's cost (say the
    reduced model's NLL with the full-depth model's E_gen) is not a property of either.
    """
    from ..model import load_checkpoint
    from ..train import last_checkpoint
    from .inference import measure_inference

    rows = []
    for name, out in runs.items():
        model, _ = load_checkpoint(last_checkpoint(out), device="cpu")
        row = measure_inference(name, model, mels, device=device)
        keep = [k for k in row if k.startswith(("e_gen_wh", "j_per_audio_s")) or k in ("e_gen_label", "rtf", "audio_s")]
        rows.append(
            {"config": name, "layers": f"{model.config.n_flows} x {model.config.n_layers}", **{k: row[k] for k in keep}}
        )
    return pd.DataFrame(rows)
