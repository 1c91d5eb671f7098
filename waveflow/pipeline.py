"""Run the numbered notebooks end to end (``reproduce``) and keep their sources clean (``check-notebooks``).

``reproduce`` is the one command that regenerates every figure: it executes ``notebooks/NN_*.ipynb`` in
sorted order with papermill, injecting a parameter profile (``params/quick.yaml`` or ``params/paper.yaml``),
writes the executed copies and their HTML renderings to ``build/notebooks/``, and stops at the first
failure so that a broken step is never hidden by later ones. ``check-notebooks`` guards the other
direction: sources in git carry no outputs, so diffs stay readable and nbval runs from a clean state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .energy import readers
from .energy.record import git_commit
from .files import atomic_write
from .paths import CHECKOUT, COMMITTED_FIGURES, EXECUTED, PARAMS, ROOT, profile_figures
from .report import REPORT_DIR, build_report
from .runinfo import write_manifest

NOTEBOOKS = ROOT / "notebooks"
OUTPUT = EXECUTED
#: Key of params/<profile>.yaml whose entries go to every notebook that declares them (no warning if not).
SHARED_KEY = "shared"


@dataclass
class NotebookRun:
    """Outcome of one notebook: where it went, what was injected, how long it took."""

    source: Path
    output: Path
    parameters: dict[str, Any]
    seconds: float
    html: Path | None = None
    ignored: list[str] = field(default_factory=list)


class NotebookFailed(RuntimeError):
    """A notebook raised; ``run`` names it and where its partial output is."""

    def __init__(self, notebook: Path, output: Path, cause: BaseException):
        self.notebook, self.output, self.cause = notebook, output, cause
        first = str(cause).strip().splitlines()
        super().__init__(
            f"notebook {notebook.name} failed (executed copy: {output}): {first[-1] if first else type(cause).__name__}"
        )


# ------------------------------------------------------------------------------------------
# Profiles and parameters
def load_profile(profile: str | Path, params_dir: Path = PARAMS) -> dict[str, Any]:
    """Read ``params/<profile>.yaml``: ``{notebook_stem: {NAME: value}}`` plus an optional ``shared`` mapping."""
    import yaml

    path = Path(profile) if str(profile).endswith((".yaml", ".yml")) else Path(params_dir) / f"{profile}.yaml"
    if not path.exists():
        choices = sorted(p.stem for p in Path(params_dir).glob("*.yaml"))
        raise FileNotFoundError(f"profile {str(profile)!r}: {path} does not exist; expected one of {choices}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise ValueError(
            f"{path}: expected a mapping of notebook stem -> {{PARAMETER: value}}, got {type(data).__name__}"
        )
    return {k: dict(v or {}) for k, v in data.items()}


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names and defaults of a notebook's ``parameters`` cell (papermill's own parser)."""
    import papermill

    return {name: info.get("default") for name, info in papermill.inspect_notebook(str(notebook)).items()}


def parameters_for(
    notebook: Path, profile: dict[str, Any], extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """What to inject into ``notebook``: only names it declares.

    Returns:
        ``(parameters, ignored)``: ignored are names given for this notebook in the profile that its
        parameters cell does not declare (a typo or a stale profile, worth a warning). Shared keys and
        ``extra`` (e.g. ``DATA`` from ``--data``) go only where declared, silently elsewhere.
    """
    declared = declared_parameters(notebook)
    own = profile.get(notebook.stem, {})
    wanted = {**profile.get(SHARED_KEY, {}), **(extra or {})}
    params = {k: v for k, v in wanted.items() if k in declared}
    params.update({k: v for k, v in own.items() if k in declared})
    ignored = sorted(k for k in own if k not in declared)
    return params, ignored


#: Notebooks that read another's results run after it, whatever their numbers. The numbering already
#: follows what each notebook reads (06 draws the measured Pareto fronts from 04's and 05's results), so
#: this only guards the order if a notebook is ever renumbered.
RUNS_AFTER: dict[str, tuple[str, ...]] = {"06": ("04", "05")}


def _in_run_order(notebooks: list[Path]) -> list[Path]:
    """Sorted by number, except that a notebook in :data:`RUNS_AFTER` moves behind the notebooks it reads."""
    order = sorted(notebooks)
    for number, after in RUNS_AFTER.items():
        nb = next((p for p in order if p.stem.split("_", 1)[0] == number), None)
        if nb is None:
            continue
        last = max((i for i, p in enumerate(order) if p.stem.split("_", 1)[0] in after), default=-1)
        if last > order.index(nb):
            order.remove(nb)
            order.insert(last, nb)  # `last` shifted down by one when nb was removed before it
    return order


def select_notebooks(notebooks_dir: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """``NN_*.ipynb`` in run order (:func:`_in_run_order`), optionally those whose number or stem is in ``only``."""
    found = _in_run_order([p for p in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")])
    if not only:
        return found
    wanted = [w.strip() for item in only for w in str(item).split(",") if w.strip()]

    def matches(p: Path, w: str) -> bool:
        return p.stem == w or p.stem.split("_", 1)[0] == w.zfill(2)

    unknown = [w for w in wanted if not any(matches(p, w) for p in found)]
    if unknown or not wanted:
        raise ValueError(
            f"--only {','.join(unknown or wanted)}: no such notebook; expected numbers or stems among "
            f"{[p.stem for p in found]}"
        )
    return [p for p in found if any(matches(p, w) for w in wanted)]


# ------------------------------------------------------------------------------------------
# Running
def render_html(executed: Path) -> Path:
    """Render an executed notebook to HTML next to it (for reading results without Jupyter)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    out = executed.with_suffix(".html")
    atomic_write(out, lambda p: Path(p).write_text(body, encoding="utf-8"), suffix=".html")
    return out


def run_notebook(
    source: Path, output_dir: Path, parameters: dict[str, Any], progress_bar: bool = True, html: bool = True
) -> NotebookRun:
    """Execute one notebook with papermill into ``output_dir`` (kernel cwd = the notebook's folder).

    Raises:
        NotebookFailed: naming the notebook when a cell raises.
    """
    import papermill

    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / source.name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source), str(output), parameters=parameters, progress_bar=progress_bar, cwd=str(source.parent)
        )
    except Exception as exc:  # papermill raises PapermillExecutionError, kernels may raise others
        raise NotebookFailed(source, output, exc) from exc
    seconds = time.perf_counter() - start
    return NotebookRun(source, output, parameters, seconds, render_html(output) if html else None)


def reproduce(
    profile: str | Path = "quick",
    data: str | None = None,
    only: list[str] | None = None,
    notebooks_dir: Path = NOTEBOOKS,
    output_dir: Path = OUTPUT,
    params_dir: Path = PARAMS,
    progress_bar: bool = True,
    html: bool = True,
    log=print,
) -> list[NotebookRun]:
    """Run the selected notebooks in order with the profile's parameters; stop at the first failure.

    Args:
        profile: name of ``params/<profile>.yaml`` or a path to a YAML file.
        data: dataset folder, injected as ``DATA`` where a notebook declares it.
        only: notebook numbers or stems to run (default: all).
        log: where progress lines go.
    """
    prof = load_profile(profile, params_dir)
    notebooks = select_notebooks(notebooks_dir, only)
    known = {p.stem for p in Path(notebooks_dir).glob("*.ipynb")} | {SHARED_KEY}
    for stem in sorted(set(prof) - known):
        warnings.warn(f"profile {str(profile)!r}: entry {stem!r} matches no notebook in {notebooks_dir}", stacklevel=2)
    extra = {"DATA": str(Path(data).expanduser().resolve())} if data else {}
    with _figures_of(profile_name(profile)) as figures:
        log(f"profile {profile_name(profile)}: figures go to {figures}")
        write_manifest(Path(output_dir), profile_name(profile), [nb.stem for nb in notebooks], figures, data)
        return _run_all(notebooks, prof, profile, extra, output_dir, progress_bar, html, log)


def profile_name(profile: str | Path) -> str:
    """``quick`` for ``quick`` and for ``params/quick.yaml``."""
    return Path(str(profile)).stem


@contextlib.contextmanager
def _figures_of(profile: str):
    """Point the notebooks' kernels at ``build/figures/<profile>/`` for the run (they inherit the
    environment), unless ``WAVEFLOW_FIGURES`` was set: a run never writes the committed figures."""
    saved = {k: os.environ.get(k) for k in ("WAVEFLOW_FIGURES", "WAVEFLOW_PROFILE")}
    if not saved["WAVEFLOW_FIGURES"]:
        os.environ["WAVEFLOW_FIGURES"] = str(profile_figures(profile))
    os.environ["WAVEFLOW_PROFILE"] = profile
    try:
        yield Path(os.environ["WAVEFLOW_FIGURES"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_all(
    notebooks: list[Path],
    prof: dict[str, Any],
    profile: str | Path,
    extra: dict[str, Any],
    output_dir: Path,
    progress_bar: bool,
    html: bool,
    log: Any,
) -> list[NotebookRun]:
    """Each notebook in turn with its parameters; the first failure stops the run."""
    runs = []
    for i, nb in enumerate(notebooks, start=1):
        params, ignored = parameters_for(nb, prof, extra)
        for name in ignored:
            warnings.warn(
                f"{nb.name}: parameter {name!r} from profile {str(profile)!r} is not declared in its "
                "parameters cell; not injected",
                stacklevel=4,
            )
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"
        log(f"[{i}/{len(notebooks)}] {nb.name} ({shown})")
        run = run_notebook(nb, Path(output_dir), params, progress_bar=progress_bar, html=html)
        run.ignored = ignored
        log(f"[{i}/{len(notebooks)}] {nb.name} done in {run.seconds:.1f} s -> {run.output}")
        runs.append(run)
    return runs


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reproduce``."""
    parser.add_argument(
        "--profile",
        default="quick",
        help="parameter profile: params/<PROFILE>.yaml, e.g. quick or paper (default: quick)",
    )
    parser.add_argument(
        "--data", default=None, help="LJSpeech-format folder, injected as DATA into notebooks that declare it"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NN",
        help="run only these notebooks (number like 02 or full stem; repeat or comma-separate)",
    )
    parser.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of NN_*.ipynb sources (default: notebooks)")
    parser.add_argument(
        "--output",
        default=str(OUTPUT),
        help=f"folder for executed notebooks and HTML (default: {OUTPUT.relative_to(ROOT)})",
    )
    parser.add_argument("--no-html", action="store_true", help="skip rendering executed notebooks to HTML")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    parser.add_argument(
        "--report",
        default=str(REPORT_DIR),
        help=f"folder of the one-page report (default: {REPORT_DIR.relative_to(ROOT)})",
    )
    parser.add_argument("--no-report", action="store_true", help="skip writing the report page")


def run_reproduce(args: argparse.Namespace) -> int:
    """``waveflow reproduce``: exit 1 naming the failing notebook."""
    start = time.perf_counter()
    prog = getattr(args, "prog", "waveflow reproduce")

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = one_line  # restored when the block exits
        try:
            runs = reproduce(
                args.profile,
                data=args.data,
                only=args.only,
                notebooks_dir=Path(args.notebooks),
                output_dir=Path(args.output),
                progress_bar=not args.no_progress,
                html=not args.no_html,
            )
        except NotebookFailed as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
    print(f"{len(runs)} notebook(s) in {time.perf_counter() - start:.1f} s; executed copies in {args.output}")
    if not args.no_report:
        name = profile_name(args.profile)
        figures = Path(os.environ.get("WAVEFLOW_FIGURES") or profile_figures(name))
        page = build_report(profile=name, executed=Path(args.output), figures=figures, out=Path(args.report))
        print(f"report: {page} (open it in a browser; it is self-contained)")
    return 0


# ------------------------------------------------------------------------------------------
# check-notebooks
def check_notebook(path: Path) -> list[str]:
    """Problems that keep a notebook source out of git: outputs, execution counts, an injected
    papermill cell, no ``parameters`` cell, or a cell without the ``id`` that nbformat 4.5 requires
    (readers fill one in with a warning today; future nbformat versions refuse the file). Empty
    list = clean."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in nb.get("cells", [])]
    needs_ids = (nb.get("nbformat", 0), nb.get("nbformat_minor", 0)) >= (4, 5)
    for i, cell in enumerate(nb.get("cells", [])):
        if needs_ids and not cell.get("id"):
            problems.append(f"cell {i} has no id (nbformat 4.5; nbformat.validator.normalize adds one)")
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution_count {cell['execution_count']}")
        if "injected-parameters" in tags[i]:
            problems.append(f"cell {i} is a papermill injected-parameters cell")
    if not any("parameters" in t for t in tags):
        problems.append("no cell tagged 'parameters'")
    return [f"{Path(path).name}: {p}" for p in problems]


def add_check_notebooks_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``check-notebooks``."""
    parser.add_argument("paths", nargs="*", help="notebooks to check (default: notebooks/*.ipynb)")


def run_check_notebooks(args: argparse.Namespace) -> int:
    """``python -m waveflow check-notebooks``: exit 1 listing every problem."""
    paths = [Path(p) for p in args.paths] or sorted(NOTEBOOKS.glob("*.ipynb"))
    problems = [p for path in paths for p in check_notebook(path)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(
            f"check-notebooks: {len(problems)} problem(s); clear outputs (Jupyter: Edit > Clear All Outputs) "
            "and tag the parameters cell",
            file=sys.stderr,
        )
        return 1
    print(f"check-notebooks: {len(paths)} notebook(s) clean")
    return 0


# ------------------------------------------------------------------------------------------
def environment_info() -> dict[str, str]:
    """Versions and hardware for the last cell of every notebook, so a figure can be traced to a run."""
    info = {"python": platform.python_version(), "waveflow": __version__}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"
    except ImportError:
        info["torch"], info["gpu"] = "not installed", "unknown"
    info["git"] = git_commit(short=True, dirty=True) or "unknown"
    # the brand the energy meter reports, read the same way
    info["cpu"] = f"{readers.cpu_brand()} ({os.cpu_count()} logical cores)"
    info["platform"] = platform.platform()
    return info


# ------------------------------------------------------------------------------------------
# figures: the committed figures, replaced only on request
def promote_figures(profile: str, source: Path | None = None, dest: Path = COMMITTED_FIGURES) -> list[tuple[str, str]]:
    """Copy a profile's figures over the committed ones; ``(file, what happened)`` per file.

    The committed ``figures/`` are what the README and the docs show, so a run never writes them
    (``reproduce`` writes to ``build/figures/<profile>/``); this is the one way they change, and it
    says for each file whether it was new, replaced or unchanged.

    Raises:
        FileNotFoundError: when the profile has no figures (it has not been run).
    """
    if not CHECKOUT:
        raise ValueError("figures: the committed figures live in a source checkout; this is an installed copy")
    source = Path(source) if source is not None else profile_figures(profile)
    files = sorted(p for p in source.glob("[0-9][0-9]_*") if p.suffix in (".pdf", ".png", ".csv"))
    if not files:
        raise FileNotFoundError(
            f"--profile {profile}: no figures in {source}; run `make reproduce PROFILE={profile}` first"
        )
    done = []
    for path in files:
        target = dest / path.name
        data = path.read_bytes()
        state = "new" if not target.exists() else ("unchanged" if target.read_bytes() == data else "replaced")
        if state != "unchanged":
            atomic_write(target, lambda tmp, data=data: Path(tmp).write_bytes(data))
        done.append((path.name, state))
    return done


def add_figures_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``figures``."""
    parser.add_argument("--profile", required=True, help="copy build/figures/<PROFILE>/ over the committed figures/")


def run_figures(args: argparse.Namespace) -> int:
    """Replace the committed figures with a profile's, and say what changed."""
    done = promote_figures(args.profile)
    for name, state in done:
        print(f"{state:>9}  figures/{name}")
    changed = sum(state != "unchanged" for _, state in done)
    print(f"{changed} of {len(done)} file(s) changed from build/figures/{args.profile}/; review with `git diff --stat`")
    return 0
