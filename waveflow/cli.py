"""Command-line interface: ``waveflow <command> [options]`` (or ``python -m waveflow <command>``).

:data:`COMMANDS` is the whole table, written out: command -> (module, argument builder, handler,
one-line help). A command's module is imported only when that command runs, so ``params`` does
not pay for importing the training or energy stack, and nothing is found by naming convention.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One command: the module that implements it, the names of its two functions, and its help."""

    module: str
    add_arguments: str
    run: str
    help: str


COMMANDS: dict[str, Command] = {
    "params": Command(
        "waveflow.cli",
        "add_params_arguments",
        "run_params",
        "table of the paper's configurations and their parameter counts",
    ),
    "train": Command(
        "waveflow.train.command", "add_arguments", "run", "train a WaveFlow model on an LJSpeech-format folder"
    ),
    "synthesize": Command(
        "waveflow.model.command", "add_arguments", "run", "synthesise audio from wavs or mels with a checkpoint"
    ),
    "evaluate": Command(
        "waveflow.measures.evaluation",
        "add_evaluate_arguments",
        "run_evaluate",
        "quality measures (NLL, mel distances, predicted MOS) of checkpoints",
    ),
    "flops": Command(
        "waveflow.measures.flops", "add_arguments", "run", "multiply-accumulates and FLOPs per second of audio"
    ),
    "zoo": Command(
        "waveflow.experiments.zoo_energy", "add_arguments", "run", "Table 1 models: counted cost and reported schedule"
    ),
    "vocoders": Command(
        "waveflow.experiments.vocoder_command",
        "add_arguments",
        "run",
        "vocoder energy table: every model by one protocol, relative to HiFi-GAN V1",
    ),
    "energy": Command(
        "waveflow.energy.cli", "add_arguments", "run", "measure the energy of any command: energy -- CMD [ARGS...]"
    ),
    "reproduce": Command(
        "waveflow.pipeline", "add_reproduce_arguments", "run_reproduce", "run the numbered notebooks with papermill"
    ),
    "figures": Command(
        "waveflow.pipeline",
        "add_figures_arguments",
        "run_figures",
        "replace the committed figures/ with a profile's run (build/figures/<profile>/)",
    ),
    "check-notebooks": Command(
        "waveflow.pipeline",
        "add_check_notebooks_arguments",
        "run_check_notebooks",
        "check notebook sources carry no outputs",
    ),
    "bench": Command(
        "waveflow.perf.bench", "add_arguments", "run", "benchmarks: synthesis speed vs peak, metering overhead"
    ),
    "gpu-check": Command(
        "waveflow.perf.gpu_check", "add_arguments", "run", "run every CUDA path once and record the numbers"
    ),
    "pareto": Command("waveflow.analysis.command", "add_arguments", "run", "Pareto table and figure of a results CSV"),
    "cli-reference": Command(
        "waveflow.cli_reference", "add_arguments", "run", "write or check the command-line reference page (docs/cli.md)"
    ),
}


#: what the exit status of a ``waveflow`` command means (the command-line page lists it)
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "the work ran and failed: a notebook of `reproduce`, a part of `gpu-check`, a rank of `train`, "
    "or a `--check` that found a difference",
    2: "bad input: an unknown command or flag, or a value that names the flag and what was expected",
    3: "`train` stopped on a NaN or infinite loss or gradient (the last good checkpoint is kept)",
    127: "`energy`: the command to measure could not be started",
}
EXIT_CODE_NOTE = "`energy -- CMD` otherwise exits with CMD's own exit status."


# ------------------------------------------------------------------------------------------
# params
def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``params``."""
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")


def run_params(args: argparse.Namespace) -> int:
    """Print the paper's configurations with their parameter counts."""
    from .model import PAPER, parameter_count

    rows = []
    for name, paper in PAPER.items():
        cfg = paper.config
        n = parameter_count(cfg)
        rows.append((name, cfg.n_height, cfg.res_channels, n, paper.paper_params_millions))
    if args.format == "csv":
        print("config,h,r,params")
        for name, h, r, n, _ in rows:
            print(f"{name},{h},{r},{n}")
        return 0
    print(f"{'config':<7}{'h':>4}{'r':>5}{'parameters':>14}{'paper (M)':>11}")
    for name, h, r, n, printed in rows:
        print(f"{name:<7}{h:>4}{r:>5}{n:>14,}{printed:>11.2f}")
    print("Counts include weight-norm gains; the paper prints them truncated to two decimals.")
    return 0


# ------------------------------------------------------------------------------------------
def build_parser(prog: str = "waveflow") -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command (their options are added on dispatch)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, description=command.help)
    return parser


def as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """Name the flag the user typed where a message names the Python parameter behind it.

    Configuration objects and helpers validate their own fields (``TrainConfig.lr: expected ...``,
    ``resolve_pue: ...``), which is right for Python callers; on the command line the same check is
    reported as ``--lr: expected ...``.
    """
    flags = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}

    def flag(match: re.Match) -> str:
        return flags.get(match.group(1), match.group(0))

    return re.sub(r"\b(?:[A-Z]\w*Config\.|resolve_)(\w+)\b", flag, message)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point: parse, dispatch, and turn expected errors into a one-line message + exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "waveflow"
    top = build_parser(prog)
    if argv and argv[0] == "--version":
        from . import __version__

        print(f"{prog} {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            top.print_usage(sys.stderr)
            print(f"{prog}: error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        top.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=command.help)
    getattr(module, command.add_arguments)(parser)
    args = parser.parse_args(rest)
    args.prog = f"{prog} {name}"  # how the user ran it, for the command's own messages
    try:
        return int(getattr(module, command.run)(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{prog} {name}: error: {as_flags(str(exc), parser)}", file=sys.stderr)
        return 2
