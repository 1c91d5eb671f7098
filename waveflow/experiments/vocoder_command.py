"""``waveflow vocoders``: the vocoder energy table on this machine, printed or as CSV.

Every model of :func:`~waveflow.experiments.vocoder_candidates.candidate_names` (or those of
``--models``), measured by one protocol (:class:`~waveflow.experiments.vocoders.Protocol`) in one
run, with the reference model (HiFi-GAN V1) always measured beside them for the relative energy.
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from .vocoder_candidates import RANDOM_WEIGHTS_NOTE, REFERENCE_MODEL, candidate_names
from .vocoders import Protocol, measure_vocoders


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vocoders``."""
    defaults = Protocol()
    parser.add_argument(
        "--models",
        nargs="+",
        action="extend",
        metavar="NAME",
        help=f"models to measure (default: all: {', '.join(candidate_names())}); {REFERENCE_MODEL} is always "
        "measured too, as the reference of the relative energy",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto: CUDA when present (default: auto)")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, metavar="S",
                        help=f"audio per clip (default: {defaults.seconds:g})")
    parser.add_argument("--trials", type=int, default=defaults.trials, metavar="N",
                        help=f"timed calls at batch 1, at least 5 (default: {defaults.trials})")
    parser.add_argument("--batch", dest="sweep", type=int, nargs="+", default=list(defaults.sweep), metavar="B",
                        help="batch sizes of the energy-optimal batch sweep (default: "
                        f"{' '.join(map(str, defaults.sweep))})")
    parser.add_argument("--vocos-batch", type=int, default=defaults.vocos_batch, metavar="B",
                        help=f"clips per call of the Vocos paper's speed protocol (default: {defaults.vocos_batch})")
    parser.add_argument("--vocos-seconds", type=float, default=defaults.vocos_seconds, metavar="S",
                        help=f"seconds per clip of that protocol (the paper's: 1; default: {defaults.vocos_seconds:g})")
    parser.add_argument("--budget", dest="budget_s", type=float, default=defaults.budget_s, metavar="S",
                        help="seconds a model's sweep and 16-clip protocol may take, predicted from its trials; "
                        f"beyond it they are skipped and the row says so (default: {defaults.budget_s:g})")
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")


def protocol_from(args: argparse.Namespace) -> Protocol:
    """The protocol the flags ask for (its own checks name the flag's field on a bad value)."""
    for batch in args.sweep:
        if batch < 1:
            raise ValueError(f"--batch: expected positive batch sizes, got {batch}")
    return Protocol(seconds=args.seconds, trials=args.trials, sweep=tuple(args.sweep), vocos_batch=args.vocos_batch,
                    vocos_seconds=args.vocos_seconds, budget_s=args.budget_s)


def _interval(value: float, low: float, high: float, fmt: str) -> str:
    if math.isnan(value):
        return "-"
    if math.isnan(low) or (abs(high - low) <= 1e-12 * max(abs(value), 1e-30)):
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def format_table(table: pd.DataFrame) -> str:
    """The table as text: one line per model, the energy with its interval, and the notes under it."""
    shown = pd.DataFrame({
        "model": table["model"],
        "family": table["family"],
        "params": table["params"].map(lambda v: f"{v / 1e6:.2f} M"),
        "steps": table["steps"],
        "clip s": table["clip_s"].map("{:.3g}".format),
        "x real time": table["xrt"].map("{:.3g}".format),
        "J per audio s [low, high]": [
            _interval(v, lo, hi, "{:.3g}") for v, lo, hi in
            zip(table["j_per_audio_s"], table["j_per_audio_s_low"], table["j_per_audio_s_high"])
        ],
        f"vs {REFERENCE_MODEL} [low, high]": [
            _interval(v, lo, hi, "{:.3g}") for v, lo, hi in
            zip(table["relative_energy"], table["relative_energy_low"], table["relative_energy_high"])
        ],
        "CV time/energy": [f"{a:.0%}/{b:.0%}" for a, b in zip(table["wall_cv"], table["energy_cv"])],
        "GFLOP per audio s": table["gflop_per_audio_s"].map("{:,.3g}".format),
        "best batch": table["optimal_batch"],
        "J/s at best": table["j_per_audio_s_optimal"].map("{:.3g}".format),
        "peak MiB": table["peak_mib"].map("{:,.0f}".format),
        "x RT 16-clip": table["vocos_xrt"].map("{:.3g}".format),
    })
    first = table.iloc[0]
    notes = [
        f"Energy: {first['energy_method']} on {first['hardware']} (PUE {first['pue']:g}); J per second of audio "
        "is the mean of the trials at batch 1; [low, high] is the estimate's interval (equal to the value when "
        "measured).",
        f"Relative energy: each model over {REFERENCE_MODEL} in this run; shared estimate factors cancel, so its "
        "interval is the corners of those factors widened by 2 standard errors of the trials.",
        f"x RT 16-clip: the Vocos paper's protocol, {int(first['vocos_batch'])} clips of "
        f"{first['vocos_clip_s']:.3g} s per call. Peak memory: {first['memory_method']}.",
        f"FLOPs: FlopCounterMode, all diffusion steps included. All models: {RANDOM_WEIGHTS_NOTE}.",
    ]
    notes += [f"{m}: {why}" for m, why in zip(table["model"], table["skipped"]) if why]
    return shown.to_string(index=False) + "\n" + "\n".join(notes)


def run(args: argparse.Namespace) -> int:
    """Measure and print the table (a few seconds to minutes per model on a CPU, by its size)."""
    protocol = protocol_from(args)
    names = args.models or list(candidate_names())

    def progress(name: str) -> None:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)

    table, _ = measure_vocoders(names, protocol, device=args.device, progress=progress)
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        print(format_table(table))
    return 0
