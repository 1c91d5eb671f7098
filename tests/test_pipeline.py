"""The papermill pipeline (reproduce) and the notebook-source check, on tiny temporary notebooks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from waveflow.cli import main
from waveflow.pipeline import (
    NOTEBOOKS,
    NotebookFailed,
    check_notebook,
    load_profile,
    parameters_for,
    reproduce,
    select_notebooks,
)


def make_notebook(path: Path, params: str, *body: str) -> Path:
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, *(new_code_cell(b) for b in body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_notebook(nbs / "01_ok.ipynb", "N = 1\nDATA = ''", "assert N == 3, N\nprint('DATA=' + DATA)")
    make_notebook(nbs / "02_other.ipynb", "M = 0", "print(M)")
    (tmp_path / "p.yaml").write_text("shared:\n  M: 5\n01_ok:\n  N: 3\n  TYPO: 1\n99_missing:\n  X: 1\n")
    return tmp_path


def test_parameters_only_declared_ones(project):
    prof = load_profile(project / "p.yaml")
    params, ignored = parameters_for(project / "notebooks" / "01_ok.ipynb", prof, {"DATA": "/d"})
    assert params == {"N": 3, "DATA": "/d"} and ignored == ["TYPO"]
    params, ignored = parameters_for(project / "notebooks" / "02_other.ipynb", prof, {"DATA": "/d"})
    assert params == {"M": 5} and ignored == []


def test_reproduce_runs_injects_and_renders(project):
    out = project / "build"
    lines = []
    with pytest.warns(UserWarning) as record:
        runs = reproduce(
            project / "p.yaml",
            data=str(project),
            only=["01"],
            notebooks_dir=project / "notebooks",
            output_dir=out,
            progress_bar=False,
            log=lines.append,
        )
    messages = " ".join(str(w.message) for w in record)
    assert "'TYPO'" in messages and "'99_missing'" in messages
    assert [r.source.name for r in runs] == ["01_ok.ipynb"] and runs[0].html.exists()
    executed = json.loads((out / "01_ok.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "N = 3" in "".join(injected[0]["source"]) and "TYPO" not in "".join(injected[0]["source"])
    assert f"DATA={project}" in "".join(executed["cells"][-1]["outputs"][0]["text"])
    assert any("done in" in line for line in lines)


def test_failing_notebook_stops_the_run_and_is_named(project, capsys):
    # No profile entry for 01 -> N stays 1 -> its assert fails; 02 must not run.
    (project / "empty.yaml").write_text("{}\n")
    out = project / "build"
    with pytest.raises(NotebookFailed, match="01_ok.ipynb"):
        reproduce(
            project / "empty.yaml",
            notebooks_dir=project / "notebooks",
            output_dir=out,
            progress_bar=False,
            html=False,
            log=lambda *_: None,
        )
    assert not (out / "02_other.ipynb").exists()
    code = main(
        [
            "reproduce",
            "--profile",
            str(project / "empty.yaml"),
            "--notebooks",
            str(project / "notebooks"),
            "--output",
            str(out),
            "--no-progress",
            "--no-html",
            "--only",
            "01",
        ]
    )
    assert code == 1 and "notebook 01_ok.ipynb failed" in capsys.readouterr().err


def test_select_and_unknown_profile(project):
    nbs = project / "notebooks"
    assert [p.name for p in select_notebooks(nbs)] == ["01_ok.ipynb", "02_other.ipynb"]
    assert [p.name for p in select_notebooks(nbs, ["2"])] == ["02_other.ipynb"]
    assert [p.name for p in select_notebooks(nbs, ["01_ok,02"])] == ["01_ok.ipynb", "02_other.ipynb"]
    with pytest.raises(ValueError, match="07: no such notebook"):
        select_notebooks(nbs, ["07"])
    with pytest.raises(FileNotFoundError, match="expected one of"):
        load_profile("nope", params_dir=project)


def test_check_notebooks_catches_dirty_sources(project, capsys):
    path = project / "notebooks" / "01_ok.ipynb"
    assert check_notebook(path) == []
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells[1].execution_count = 3
    inj = new_code_cell("N = 2")
    inj.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(1, inj)
    nb.cells[0].metadata["tags"] = []
    nbformat.write(nb, path)
    raw = json.loads(path.read_text())
    del raw["cells"][2]["id"]  # a cell pasted in from an older notebook
    path.write_text(json.dumps(raw))
    problems = " | ".join(check_notebook(path))
    for text in ("has outputs", "execution_count 3", "injected-parameters", "no cell tagged 'parameters'"):
        assert text in problems
    assert "cell 2 has no id" in problems
    assert main(["check-notebooks", str(path)]) == 1
    assert "01_ok.ipynb" in capsys.readouterr().err


def test_repository_notebooks_are_clean_and_profiles_match():
    assert main(["check-notebooks"]) == 0
    stems = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    for profile in ("quick", "paper"):
        prof = load_profile(profile)
        for stem in prof:
            if stem == "shared" or stem not in stems:
                continue
            assert parameters_for(NOTEBOOKS / f"{stem}.ipynb", prof)[1] == [], (profile, stem)


def test_the_numbering_is_the_run_order():
    """The notebooks run in the order of their numbers: each reads only lower-numbered ones."""
    stems = [p.stem for p in select_notebooks(NOTEBOOKS)]
    assert stems == sorted(stems)


def test_a_notebook_runs_after_the_notebooks_it_reads(tmp_path, monkeypatch):
    from waveflow import pipeline

    monkeypatch.setattr(pipeline, "RUNS_AFTER", {"05": ("04", "06")})
    for stem in ("01_a", "04_b", "05_pareto", "06_budget", "07_more"):
        make_notebook(tmp_path / f"{stem}.ipynb", "X = 1")
    assert [p.stem[:2] for p in select_notebooks(tmp_path)] == ["01", "04", "06", "05", "07"]
    assert [p.stem[:2] for p in select_notebooks(tmp_path, only=["05", "06"])] == ["06", "05"]
    (tmp_path / "06_budget.ipynb").unlink()
    assert [p.stem[:2] for p in select_notebooks(tmp_path)] == ["01", "04", "05", "07"]


def test_a_run_writes_its_figures_under_its_profile_not_the_committed_ones(monkeypatch, tmp_path):
    """``reproduce`` points the kernels at build/figures/<profile>/ for the run, and restores the
    environment after: the committed figures/ never change through a run."""
    import os

    from waveflow import paths
    from waveflow.pipeline import _figures_of, profile_name

    monkeypatch.delenv("WAVEFLOW_FIGURES", raising=False)
    monkeypatch.delenv("WAVEFLOW_PROFILE", raising=False)
    assert profile_name("params/medium.yaml") == "medium"
    with _figures_of("medium") as figures:
        assert figures == paths.profile_figures("medium")
        assert os.environ["WAVEFLOW_FIGURES"] == str(figures) and os.environ["WAVEFLOW_PROFILE"] == "medium"
        assert not figures.is_relative_to(paths.COMMITTED_FIGURES)
    assert "WAVEFLOW_FIGURES" not in os.environ and "WAVEFLOW_PROFILE" not in os.environ
    monkeypatch.setenv("WAVEFLOW_FIGURES", str(tmp_path))  # an explicit choice (make test) is kept
    with _figures_of("quick") as figures:
        assert figures == tmp_path


def test_promoting_figures_says_what_it_replaced(tmp_path):
    from waveflow.pipeline import promote_figures

    source, dest = tmp_path / "build", tmp_path / "figures"
    source.mkdir()
    dest.mkdir()
    (source / "05_x.png").write_bytes(b"new")
    (source / "05_x.csv").write_text("a\n1\n")
    (source / "06_y.pdf").write_bytes(b"pdf")
    (source / "notes.txt").write_text("not a figure")
    (dest / "05_x.png").write_bytes(b"old")
    (dest / "05_x.csv").write_text("a\n1\n")
    done = dict(promote_figures("medium", source, dest))
    assert done == {"05_x.csv": "unchanged", "05_x.png": "replaced", "06_y.pdf": "new"}
    assert (dest / "05_x.png").read_bytes() == b"new" and not (dest / "notes.txt").exists()
    with pytest.raises(FileNotFoundError, match="--profile paper: no figures"):
        promote_figures("paper", tmp_path / "missing", dest)
