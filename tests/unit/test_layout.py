"""The layout of docs/architecture.md, enforced: who may import what, and the product's size limits."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("imgsearch", "indexer", "searchapi", "demo")
TOOLING = ("bench", "demo", "deploy", "kibana", "docker", "devstack")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement names (also inside functions); `from m import n`
    counts as `m.n` where n is not in m's public surface (`__all__`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if not public(node.module, alias.name)
            )
            found.add(node.module)
    return found


def public(module: str, name: str) -> bool:
    if top(module) not in {"indexer", "searchapi"} or "." in module:
        return True
    return name in importlib.import_module(module).__all__


def offenders(folders: tuple[str, ...], forbidden) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(*folders)
        for module in sorted(imported_modules(path))
        if forbidden(module)
    ]


def top(module: str) -> str:
    return module.split(".")[0]


def folders_outside_tests() -> tuple[str, ...]:
    """Every top-level folder of the repository but tests/ (and hidden ones: .venv, .git)."""
    return tuple(
        sorted(
            path.name
            for path in ROOT.iterdir()
            if path.is_dir() and path.name != "tests" and not path.name.startswith(".")
        )
    )


def test_the_core_imports_nothing_of_ours():
    ours = {"indexer", "searchapi", "bench", "demo", "deploy", "kibana", "devstack", "tests"}
    assert offenders(("imgsearch",), lambda module: top(module) in ours) == []


def test_api_and_indexer_never_import_each_other_nor_the_api_mysql():
    assert offenders(("searchapi",), lambda module: top(module) in {"indexer", "mysql"}) == []
    assert offenders(("indexer",), lambda module: top(module) == "searchapi") == []


def test_tooling_uses_only_the_public_surface_of_indexer_and_searchapi():
    def reaches_inside(module: str) -> bool:
        return top(module) in {"indexer", "searchapi"} and "." in module

    assert offenders(TOOLING, reaches_inside) == []


def test_nothing_outside_tests_imports_tests():
    assert {"bench", "demo", "devstack", "imgsearch"} <= set(folders_outside_tests())
    assert offenders(folders_outside_tests(), lambda module: top(module) == "tests") == []


@pytest.mark.parametrize("package", ["indexer", "searchapi"])
def test_public_surface_is_declared(package):
    module = __import__(package)
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_the_api_process_loads_neither_mysql_nor_the_indexer():
    probe = (
        "import sys, searchapi, searchapi.routes, searchapi.images, searchapi.ops; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('indexer', 'mysql')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_no_product_module_or_function_is_too_long():
    too_long = []
    for path in python_files(*PRODUCT):
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}: {node.name}() {length} lines")
    assert too_long == []
