"""Command-line interface: ``python -m waveflow <command> [options]``.

Each command lives in the module that implements it and registers here through a small
``add_arguments(parser)`` / ``run(args) -> int`` pair, imported lazily so that ``params`` does not
pay for importing the training or energy stack.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Modules define add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "params": ("waveflow.cli", "table of the paper's configurations and their parameter counts"),
}


def _register(name: str, module: str, help_text: str) -> None:
    COMMANDS[name] = (module, help_text)


# Commands implemented in other modules (registered whether or not they are imported yet).
for _name, _module, _help in (
    ("train", "waveflow.train", "train a WaveFlow model on an LJSpeech-format folder"),
    ("synthesize", "waveflow.synthesis", "synthesise audio from wavs or mels with a checkpoint"),
    ("evaluate", "waveflow.quality", "quality measures (NLL, mel distances, predicted MOS) of checkpoints"),
    ("flops", "waveflow.flops", "multiply-accumulates and FLOPs per second of audio"),
    ("energy", "waveflow.energy", "measure the energy of any command: energy -- CMD [ARGS...]"),
    ("reproduce", "waveflow.pipeline", "run the numbered notebooks with papermill"),
    ("check-notebooks", "waveflow.pipeline", "check notebook sources carry no outputs"),
    ("bench", "waveflow.bench", "benchmarks: synthesis speed vs peak, metering overhead"),
):
    _register(_name, _module, _help)


# ------------------------------------------------------------------------------------------
# params
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``params``."""
    parser.add_argument("--format", choices=("table", "csv"), default="table", help="output format (default: table)")


def run(args: argparse.Namespace) -> int:
    """Print the paper's configurations with their parameter counts."""
    from .config import PAPER
    from .model import WaveFlow

    rows = []
    for name, paper in PAPER.items():
        cfg = paper.config
        rows.append((name, cfg.n_height, cfg.res_channels, WaveFlow(cfg).num_parameters(), paper.paper_params_millions))
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
def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command (options added lazily)."""
    parser = argparse.ArgumentParser(prog="python -m waveflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn expected errors into a one-line message + exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            top.print_usage(sys.stderr)
            print(f"python -m waveflow: error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        top.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m waveflow {name}", description=help_text)
    adder = getattr(module, f"add_{name.replace('-', '_')}_arguments", None) or module.add_arguments
    runner = getattr(module, f"run_{name.replace('-', '_')}", None) or module.run
    adder(parser)
    args = parser.parse_args(rest)
    try:
        return int(runner(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m waveflow {name}: error: {exc}", file=sys.stderr)
        return 2
