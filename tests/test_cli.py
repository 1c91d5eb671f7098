"""The command-line entry point."""

from __future__ import annotations

import subprocess
import sys

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
