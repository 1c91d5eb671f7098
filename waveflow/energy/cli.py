"""``python -m waveflow energy -- CMD [ARGS...]``: measure any command like ``time`` does.

Wall clock around the subprocess, and for the CPU estimate the CPU seconds of the subprocess tree
only (not of this Python process, which just waits). ``--idle-baseline S`` measures S seconds of
idle before the command starts; ``--wall-meter FILE.csv`` reads a wall meter's log after it ends.
``--json`` also prints the record as one line of JSON on stdout after the command's own output
(``... | tail -n 1 | jq``); the human summary stays on stderr either way, so stdout holds only
the command's output and the JSON line.
The meter's warnings (a generic CPU brand, say) are printed as plain one-line notes, never as a
``file:line`` warning pointing into the package.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import subprocess
import sys
import warnings

from . import readers as er
from .meter import EnergyMeter
from .record import DEFAULT_LOG, EnergyRecord, append_record, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``energy``."""
    parser.add_argument(
        "--intensity", default=None, help="carbon-intensity code (default: waveflow.energy.carbon's default)"
    )
    parser.add_argument(
        "--pue", default=None, help="PUE preset name or value >= 1 (default: waveflow.energy.carbon's default)"
    )
    parser.add_argument(
        "--cpu-tdp",
        type=float,
        default=None,
        metavar="W",
        help="CPU TDP in watts per package, overriding the table lookup",
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=None,
        metavar="N",
        help="hardware threads per CPU package for the per-thread estimate, overriding the table",
    )
    parser.add_argument(
        "--idle-baseline",
        type=float,
        default=None,
        metavar="S",
        help="measure S seconds of idle before the command and also report dynamic energy (default: off)",
    )
    parser.add_argument(
        "--wall-meter",
        default=None,
        metavar="FILE.csv",
        help="a wall-meter log with header timestamp,watts (Unix s, W), integrated over the command as a check",
    )
    parser.add_argument("--label", default=None, help="label of the row in the log (default: the command)")
    parser.add_argument(
        "--log", default=str(DEFAULT_LOG), metavar="PATH", help=f"CSV log to append to (default: {DEFAULT_LOG})"
    )
    parser.add_argument("--no-log", action="store_true", help="print the summary only, append nothing")
    parser.add_argument(
        "--json",
        action="store_true",
        help="also print the record as one line of JSON on stdout, after the command's output "
        "(components, methods, scopes, bounds, hardware, PUE, intensity, project commit, tool version); "
        "the summary stays on stderr",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to measure, after --")


def run(args: argparse.Namespace) -> int:
    """Run and measure the command; print the summary to stderr; return the command's exit code.

    The summary goes to stderr so the command's stdout can still be piped; with ``--json`` the
    record follows the command's output on stdout as one JSON line. A signal death returns
    128 + signal like a shell; a missing executable returns 127.
    """
    prog = getattr(args, "prog", "waveflow energy")
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ValueError("expected a command after --, e.g. `waveflow energy -- python train.py`")
    pue = args.pue
    if pue is not None:
        try:
            pue = float(pue)
        except ValueError:
            pass  # a preset name
    command = shlex.join(cmd)
    short = " ".join(command.split())
    label = args.label or (short if len(short) <= 80 else short[:77] + "...")
    meter = EnergyMeter(
        label,
        intensity=args.intensity,
        pue=pue,
        cpu_tdp_w=args.cpu_tdp,
        cpu_threads=args.cpu_threads,
        cpu_seconds=functools.partial(er.process_tree_cpu_seconds, include_self=False),
        idle_baseline_s=args.idle_baseline,
        wall_meter=args.wall_meter,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meter.start()
    for w in caught:
        print(f"{prog}: note: {w.message}", file=sys.stderr)
    try:
        proc = subprocess.Popen(cmd)
    except OSError as exc:
        record = meter.stop(exit_code=127, command=command)
        print(f"{prog}: error: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        if args.json:
            _print_json(record)
        return 127
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:  # the terminal sent SIGINT to the child too; wait for it to finish
            continue
    code = 128 - code if code < 0 else code
    record = meter.stop(exit_code=code, command=command)
    print(summary(record), file=sys.stderr)
    if not args.no_log:
        try:
            print(f"  appended to {append_record(record, args.log)}", file=sys.stderr)
        except (OSError, ValueError) as exc:
            print(f"  could not append to {args.log}: {exc}", file=sys.stderr)
    if args.json:
        _print_json(record)
    return code


def _print_json(record: EnergyRecord) -> None:
    """The record as the last line of stdout, flushed so it follows everything the command wrote."""
    sys.stderr.flush()
    print(record.to_json(), flush=True)
