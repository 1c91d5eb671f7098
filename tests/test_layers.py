"""The package's architecture, checked from the source with ``ast`` (no import, well under a second).

Layers, top to bottom; imports may only point down (README, "How the code is organised")::

    shell       waveflow.cli, waveflow.pipeline, waveflow.report, waveflow.__main__
    workflows   perf/  >  experiments/  >  train/  >  measures/
    domains     model/ | data/ | energy/ | analysis/ | zoo/    never each other
    shared      audio, devices  >  paths, files

A workflow package imports its own modules freely, and only packages of a lower rank beside them.
Extra rules: ``energy/`` imports no torch at module level and no matplotlib; ``analysis/`` imports no
torch at all; only ``analysis/figures`` and ``analysis/plotting.py`` import matplotlib or seaborn;
sub-package faces (``__init__.py``) only re-export; and there is no import cycle, counting imports
made inside functions. The same checker runs on a synthetic package with a forbidden import planted
in it, so a broken rule is shown to fail.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "waveflow"

SHELL = {"cli", "cli_reference", "committed", "pipeline", "report", "runinfo", "__main__"}
#: workflow package -> rank; a workflow may import workflows of a strictly lower rank
WORKFLOWS = {
    "perf": 4,  # benchmarks, per-op profiles, the meter's overhead, the GPU check
    "experiments": 3,  # the paper's measurements: E_train, E_gen, the Table 1 models, energy to quality
    "train": 2,  # the training loop and its DDP driver
    "measures": 1,  # quality measures and FLOP counts, which training marks and experiments both use
}
DOMAINS = {"model", "data", "energy", "analysis", "zoo"}
#: shared module -> rank; a shared module may import shared modules of a strictly lower rank
SHARED = {"audio": 2, "devices": 2, "paths": 1, "files": 1}
PLOTTING_MODULES = ("waveflow.analysis.figures", "waveflow.analysis.plotting")
PLOTTING_LIBRARIES = {"matplotlib", "seaborn"}


def _plots(name: str) -> bool:
    """Whether a module may import a plotting library: the figure modules and the plot helper."""
    return any(name == m or name.startswith(f"{m}.") for m in PLOTTING_MODULES)


def _module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.stmt, bool]]:
    """Every import statement with whether it runs at import time (not inside a function or
    behind ``if TYPE_CHECKING``)."""
    found: list[tuple[ast.stmt, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, top))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                continue  # typing only: never executed
            else:
                visit(child, top)

    visit(tree, True)
    return found


def _targets(stmt: ast.stmt, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """Fully qualified names a statement imports: package modules, or the top-level third-party name."""
    if isinstance(stmt, ast.Import):
        return [alias.name for alias in stmt.names]
    assert isinstance(stmt, ast.ImportFrom)
    if stmt.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (stmt.level - 1)]
        prefix = ".".join(base + ([stmt.module] if stmt.module else []))
    else:
        prefix = stmt.module or ""
    out = []
    for alias in stmt.names:
        sub = f"{prefix}.{alias.name}"
        out.append(sub if sub in modules else prefix)
    return out


def _component(name: str, root: str) -> tuple[str, str]:
    """(layer, unit) of a package module: ('domain', 'energy'), ('shared', 'audio'), ..."""
    parts = name.split(".")
    if len(parts) == 1:
        return "face", root
    head = parts[1]
    if head in DOMAINS:
        return "domain", head
    if head in SHARED:
        return "shared", head
    if head in WORKFLOWS:
        return "workflow", head
    if head in SHELL:
        return "shell", head
    return "unknown", head


def check_package(root: Path) -> list[str]:
    """Every broken rule of the layout in the package at ``root``, as one line each."""
    files = sorted(root.rglob("*.py"))
    names = {_module_name(root, p): p for p in files}
    modules = set(names)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        layer, unit = _component(name, root.name)
        if layer == "unknown":
            problems.append(f"{name}: not placed in any layer; add it to the layer table")
        if is_package and layer == "domain":
            for node in tree.body:
                ok = isinstance(node, (ast.ImportFrom, ast.Import)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                )
                ok = ok or (
                    isinstance(node, ast.Assign)
                    and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]
                )
                if not ok:
                    problems.append(f"{name}: a face only re-exports; line {node.lineno} does something else")
        for stmt, top in _imports(tree):
            for target in _targets(stmt, name, is_package, modules):
                first = target.split(".")[0]
                where = f"{name} (line {stmt.lineno}) imports {target}"
                if first == root.name:
                    if target not in modules:
                        problems.append(f"{where}: no such module")
                        continue
                    graph[name].add(target)
                    problems += _layer_problems(name, target, root.name, where)
                    continue
                if first in PLOTTING_LIBRARIES and not _plots(name):
                    problems.append(f"{where}: only analysis/figures and analysis/plotting.py may plot")
                if layer == "domain" and unit == "energy" and first == "torch" and top:
                    problems.append(f"{where}: the energy layer must not import torch at module level")
                if layer == "domain" and unit == "analysis" and first == "torch":
                    problems.append(f"{where}: the analysis layer imports no torch")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _layer_problems(name: str, target: str, root: str, where: str) -> list[str]:
    src_layer, src = _component(name, root)
    dst_layer, dst = _component(target, root)
    if src == dst and src_layer == dst_layer:
        return []
    if dst_layer == "face":
        return [] if src_layer == "shell" else [f"{where}: only the shell may import the package face"]
    if src_layer == "shell" or src_layer == "face":
        return []
    if dst_layer == "shell":
        return [f"{where}: nothing below the shell imports the shell"]
    if src_layer == "workflow":
        if dst_layer == "workflow" and WORKFLOWS[dst] >= WORKFLOWS[src]:
            return [f"{where}: workflow {src} may only import lower workflows"]
        return []
    if src_layer == "domain":
        if dst_layer == "shared":
            return []
        return [f"{where}: the {src} domain may import only the shared layer and itself"]
    if src_layer == "shared":
        if dst_layer == "shared" and SHARED[dst] < SHARED[src]:
            return []
        return [f"{where}: the shared layer imports only lower shared modules"]
    return [f"{where}: not allowed"]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


# ------------------------------------------------------------------------------------------------
def test_the_package_follows_its_layers():
    problems = check_package(PACKAGE)
    assert not problems, "\n".join(problems)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dest = tmp_path / "waveflow"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _plant(path: Path, line: str, inside_function: bool = False) -> None:
    text = path.read_text(encoding="utf-8")
    if inside_function:
        text += f"\n\ndef _planted():\n    {line}\n"
    else:
        text += f"\n{line}\n"
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "line", "inside", "expected"),
    [
        ("energy/meter.py", "from ..model import WaveFlow", False, "may import only the shared layer"),
        ("energy/record.py", "import torch", False, "must not import torch at module level"),
        ("energy/carbon.py", "import matplotlib.pyplot as plt", True, "only analysis/figures"),
        ("analysis/pareto.py", "import torch", True, "imports no torch"),
        ("model/flow.py", "from ..data import LJSpeech", True, "may import only the shared layer"),
        ("measures/quality.py", "from ..train import train", True, "may only import lower workflows"),
        ("train/loop.py", "from ..experiments import measure_training", True, "may only import lower workflows"),
        ("paths.py", "from .audio import HOP_LENGTH", True, "imports only lower shared modules"),
        ("train/loop.py", "from ..cli import main", True, "nothing below the shell"),
        ("energy/__init__.py", "print('side effect')", False, "a face only re-exports"),
    ],
)
def test_a_planted_forbidden_import_is_caught(copy, module, line, inside, expected):
    assert check_package(copy) == []
    _plant(copy / module, line, inside)
    problems = check_package(copy)
    assert any(expected in p for p in problems), problems


def test_a_cycle_through_a_function_level_import_is_caught(copy):
    _plant(copy / "energy" / "record.py", "from .meter import EnergyMeter", inside_function=True)
    problems = check_package(copy)
    assert any(p.startswith("import cycle:") and "waveflow.energy.meter" in p for p in problems), problems


def test_energy_meter_imports_no_torch_at_run_time():
    """``import waveflow.energy`` stays torch-free in a fresh interpreter (the face is lazy)."""
    import subprocess
    import sys

    code = "import sys, waveflow.energy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_folder_listing_shows_the_layers():
    """Directly under ``waveflow/`` lie only the shared layer, the shell and the packages."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= SHELL | set(SHARED), sorted(modules - SHELL - set(SHARED))
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == DOMAINS | set(WORKFLOWS), sorted(packages ^ (DOMAINS | set(WORKFLOWS)))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("waveflow.quality", "waveflow.measures.quality"),
        ("waveflow.flops", "waveflow.measures.flops"),
        ("waveflow.bench", "waveflow.perf.bench"),
        ("waveflow.gpu_check", "waveflow.perf.gpu_check"),
        ("waveflow.zoo_energy", "waveflow.experiments.zoo_energy"),
        ("waveflow.distributed", "waveflow.train.distributed"),
    ],
)
def test_old_module_paths_still_import_as_the_same_module(old, new):
    """Code written against the flat layout keeps working: the old path gives the very same module,
    which keeps its own name and spec."""
    import importlib

    moved = importlib.import_module(old)
    assert moved is importlib.import_module(new)
    assert moved.__spec__.name == new


def test_the_experiments_face_keeps_the_flat_module_names():
    from waveflow import experiments
    from waveflow.experiments import measure

    for name in ("measure_inference", "measure_training", "batch_sweep", "SWEEP_NOISE", "PAPER_STEPS"):
        assert getattr(experiments, name) is getattr(measure, name)
