"""The front door and the docs site: the README's size and headline numbers, its own-model example,
the generated command-line page, and no text about how the project was developed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from waveflow.cli_reference import reference
from waveflow.committed import BLOCKS, PAGES, headline, render, stale_blocks
from waveflow.paths import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_every_number_from_the_committed_run_is_generated_from_its_csv():
    """The README's and the docs' run numbers are blocks generated from figures/*.csv; a page that
    disagrees with them fails (``make docs`` rewrites the blocks)."""
    assert stale_blocks() == [], "stale generated blocks (run `make docs`)"
    for page, names in PAGES.items():
        text = (ROOT / page).read_text(encoding="utf-8")
        for name in names:
            assert f"<!-- generated: {name} -->" in text, f"{page} lost its {name} block"
    assert set(BLOCKS) == {name for names in PAGES.values() for name in names}


def test_a_changed_csv_changes_the_generated_text(tmp_path):
    """The check can fail: the same table from a CSV with another E_gen differs."""
    import shutil

    for csv in (ROOT / "figures").glob("*.csv"):
        shutil.copy(csv, tmp_path / csv.name)
    path = tmp_path / "04_inference_energy.csv"
    table = path.read_text(encoding="utf-8").splitlines()
    mine = next(i for i, line in enumerate(table) if line.startswith("WF2,e_gen_wh,") and "this machine" in line)
    cells = table[mine].split(",")
    cells[2] = str(float(cells[2]) * 1.5)
    table[mine] = ",".join(cells)
    path.write_text("\n".join(table) + "\n", encoding="utf-8")
    assert headline(tmp_path) != headline()
    readme = README.read_text(encoding="utf-8")
    assert render(readme, "headline", tmp_path) != readme


def test_the_readme_example_runs():
    """The 'Your own model' example is run as printed, from the repository root."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Your own model") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "pareto_optimal" in out.stdout and "w64" in out.stdout and "w512" in out.stdout


def test_the_command_line_page_is_generated_from_the_parsers():
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == reference(), "docs/cli.md is stale: run `make docs`"


def test_the_command_line_page_does_not_depend_on_where_the_repository_was_cloned(monkeypatch):
    import argparse

    from waveflow import cli_reference

    def rendered(root: Path) -> str:
        monkeypatch.setattr(cli_reference, "ROOT", root)
        parser = argparse.ArgumentParser(prog="waveflow x", formatter_class=cli_reference._formatter)
        parser.add_argument("--log", type=Path, default=root / "build" / "results" / "energy_log.csv",
                            help="CSV log to append to (default: %(default)s)")
        cli_reference._relative_to_root(parser)
        return parser.format_help()

    short, long = rendered(Path("/r")), rendered(Path("/" + "deep/" * 30 + "checkout"))
    assert short == long and "(default: build/results/energy_log.csv)" in short


def test_every_command_is_on_the_command_line_page():
    from waveflow.cli import COMMANDS, EXIT_CODES

    page = reference()
    for name in COMMANDS:
        assert f"\n## {name}\n" in page
    for code in EXIT_CODES:
        assert f"\n| {code} |" in page


#: "session" is a technical term for Carbontracker's and onnxruntime's session objects; anything else
#: that uses it, or speaks of when something was added, talks about the project's own development
_TECHNICAL = re.compile(r"carbontracker|onnx|p808|\w+\.session|session *[.=:,)(]|session is", re.I)
_HISTORY = re.compile(r"\bsessions?\b|\badded (later|after)\b|\blater session\b|\bthis run added\b", re.I)


def _prose_files() -> list[Path]:
    files = [README, *DOCS.glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "waveflow").rglob("*.py")]
    return [f for f in files if f.name != "changelog.md"]


def test_no_text_describes_the_projects_own_development():
    found = []
    for path in _prose_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _HISTORY.search(line) and not _TECHNICAL.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_history_check_can_fail():
    assert _HISTORY.search("A later session measured this") and not _TECHNICAL.search("A later session measured this")
