"""``python -m waveflow <command>``; see :mod:`waveflow.cli`."""

from .cli import main

raise SystemExit(main(prog="python -m waveflow"))
