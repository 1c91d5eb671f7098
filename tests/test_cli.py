"""The command-line entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

from waveflow.cli import main


def test_params_csv_lists_the_paper_counts(capsys):
    assert main(["params", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "config,h,r,params"
    assert lines[1:] == [
        "WF1,8,64,5916372",
        "WF2,16,64,5916372",
        "WF3,16,96,12782036",
        "WF4,16,128,22252756",
        "WF5,16,256,86186196",
    ]


def test_params_table_shows_printed_values(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "86,186,196" in out and "86.18" in out


def test_unknown_command_exits_2(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "waveflow", "params", "--format", "csv"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("config,h,r,params")


def test_version_prints_the_package_version(capsys):
    from waveflow import __version__
    from waveflow.cli import main

    assert main(["--version"], prog="waveflow") == 0
    assert capsys.readouterr().out.strip() == f"waveflow {__version__}"


@pytest.mark.parametrize("prog", ["waveflow", "python -m waveflow"])
def test_reproduce_refuses_an_unknown_notebook_among_known_ones(capsys, prog):
    """``--only 03,99`` is an error naming 99, not a run of 03 alone; the message uses the name the program
    was run by."""
    from waveflow.cli import main

    assert main(["reproduce", "--only", "03,99", "--no-report"], prog=prog) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog} reproduce: error: --only 99:"), err
    assert "03_waveflow_training_energy" in err  # what is accepted


def test_every_device_flag_defaults_to_auto():
    """One default for --device everywhere (the GPU check, which exists to test CUDA, excepted)."""
    import argparse
    import importlib

    from waveflow.cli import COMMANDS

    for name, command in COMMANDS.items():
        parser = argparse.ArgumentParser()
        getattr(importlib.import_module(command.module), command.add_arguments)(parser)
        for action in parser._actions:
            if "--device" in action.option_strings and name != "gpu-check":
                assert action.default == "auto", f"{name} --device defaults to {action.default!r}"


def test_errors_name_the_flag_not_the_internal_parameter():
    import argparse

    from waveflow.cli import as_flags

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--log-every", type=int)
    parser.add_argument("--pue")
    assert as_flags("TrainConfig.lr: expected a finite positive learning rate", parser).startswith("--lr: expected")
    assert as_flags("TrainConfig.log_every: expected a positive integer", parser).startswith("--log-every:")
    assert as_flags("resolve_pue: unknown preset 'x'", parser).startswith("--pue: unknown preset")
    assert as_flags("TrainConfig.segment: 3 is not a multiple", parser).startswith("TrainConfig.segment")


def test_a_bad_learning_rate_on_the_command_line_names_the_flag(tmp_path, capsys):
    assert main(["train", "--lr", "-1", "--steps", "1", "--out", str(tmp_path / "run")], prog="waveflow") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("waveflow train: error: --lr: expected"), err
