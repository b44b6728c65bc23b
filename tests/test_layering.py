"""The arrows point one way: umq_live -> app -> umq -> streams; streams never imports torch, umq never imports app."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for n in names:
                found.setdefault(n.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_streams_imports_neither_app_nor_torch_nor_umq():
    roots = imported_roots("streams")
    for forbidden in ("app", "umq", "torch", "torchaudio"):
        assert forbidden not in roots, f"streams imports {forbidden} in {roots.get(forbidden)}"


def test_umq_never_imports_app():
    roots = imported_roots("umq")
    assert "app" not in roots, f"umq imports app in {roots.get('app')}"


def test_the_checker_sees_imports():
    assert "numpy" in imported_roots("streams")


def test_only_the_api_package_sits_above_app():
    """``umq_live`` (the Python API) -> ``app`` -> ``umq`` -> ``streams``: nothing below imports the API."""
    for package in ("app", "umq", "streams"):
        roots = imported_roots(package)
        assert "umq_live" not in roots, f"{package} imports umq_live in {roots.get('umq_live')}"
    assert "app" in imported_roots("umq_live")


PUBLIC_MODULES = {"umq", "umq.result", "umq.labels", "umq.device", "umq.checkpoint", "umq.types", "umq.paths",
                  "umq.runtime", "umq.perception"}
"""What ``app`` and ``umq_live`` may import from ``umq``: its small top-level modules and the public names of the
``runtime`` and ``perception`` packages (their ``__all__``), never a module inside them or the training code."""


def _umq_imports(package: str):
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "umq":
                yield str(path.relative_to(ROOT)), node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "umq":
                        yield str(path.relative_to(ROOT)), a.name, []


def test_app_imports_only_the_public_names_of_umq():
    import importlib

    public = {pkg: set(importlib.import_module(pkg).__all__) for pkg in ("umq.runtime", "umq.perception")}
    bad = []
    for package in ("app", "umq_live"):
        for where, module, names in _umq_imports(package):
            if module not in PUBLIC_MODULES:
                bad.append(f"{where}: {module}")
            elif module in public:
                bad += [f"{where}: {module}.{n} (not in __all__)" for n in names if n not in public[module]]
    assert not bad, "app reaches inside umq:\n" + "\n".join(sorted(bad))


def test_the_public_names_resolve():
    import importlib

    for pkg in ("umq.runtime", "umq.perception"):
        module = importlib.import_module(pkg)
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{pkg}.{name}"
