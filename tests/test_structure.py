"""Size and shape limits that keep the code reviewable: modules <= 500 lines, functions <= 80 lines, no import
cycle inside ``umq`` (function-local imports count: hiding a cycle behind one does not remove it).

The exceptions are today's, listed by name so that they can only shrink: a new long function or module fails,
and an exception that is no longer needed fails too (remove it from the list).
"""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("app", "umq", "streams")
MAX_MODULE, MAX_FUNCTION = 500, 80

MODULE_EXCEPTIONS: set[str] = set()
FUNCTION_EXCEPTIONS: set[str] = {
    "app/bench/report.py:run_bench", "app/bench/report.py:format_table", "app/dashboard/ui_live.py:build_live",
    "umq/training/face/train.py:main", "umq/training/text/train_context.py:main", "umq/training/evaluate.py:main",
    "umq/model/losses.py:compute_losses", "umq/training/text/train.py:main", "umq/training/voice/train.py:train",
}
CYCLE_EXCEPTIONS: set[frozenset[str]] = set()


def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_modules_and_functions_stay_small():
    long_modules, long_functions = set(), set()
    for rel, src in _sources():
        if src.count("\n") > MAX_MODULE:
            long_modules.add(rel)
        for node in ast.walk(ast.parse(src, rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION:
                long_functions.add(f"{rel}:{node.name}")
    assert long_modules <= MODULE_EXCEPTIONS, f"modules over {MAX_MODULE} lines: {long_modules - MODULE_EXCEPTIONS}"
    assert long_functions <= FUNCTION_EXCEPTIONS, \
        f"functions over {MAX_FUNCTION} lines: {long_functions - FUNCTION_EXCEPTIONS}"
    assert long_modules >= MODULE_EXCEPTIONS, f"no longer long, drop the exception: {MODULE_EXCEPTIONS - long_modules}"
    assert long_functions >= FUNCTION_EXCEPTIONS, \
        f"no longer long, drop the exception: {FUNCTION_EXCEPTIONS - long_functions}"


def _module_graph(package: str) -> dict[str, set[str]]:
    files = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod and not mod.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_umq():
    cycles = set(_cycles(_module_graph("umq")))
    assert cycles <= CYCLE_EXCEPTIONS, f"import cycles: {[sorted(c) for c in cycles - CYCLE_EXCEPTIONS]}"
    assert cycles >= CYCLE_EXCEPTIONS, f"cycle gone, drop the exception: {CYCLE_EXCEPTIONS - cycles}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


CLI_SHIMS = {"umq.train", "umq.evaluate", "umq.experiments"}
"""``python -m umq.train`` / ``umq.evaluate`` / ``umq.experiments``: entry points kept at their documented names."""


def test_live_code_never_imports_training():
    graph = _module_graph("umq")
    live = {m for m in graph if not m.startswith("umq.training") and m not in CLI_SHIMS}
    bad = {m: sorted(t for t in graph[m] if t.startswith("umq.training")) for m in live}
    assert not {m: t for m, t in bad.items() if t}, f"live modules import training code: {bad}"
    assert graph["umq.evaluate"] == {"umq.training.evaluate"}  # the checker sees the shims' imports
