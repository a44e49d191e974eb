"""The composition root's rules: one importer of the daemon, no service lookup by name.

- Only `provisioner serve` (cli/serve.py) imports `provisioner.daemon`; subsystems receive
  their ports through their constructors.
- No module keeps a `dict[str, Any]` of services, and no module outside the CLI imports
  inside a function (the CLI does so only to start fast; a function-level import
  elsewhere would be hiding a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner

PACKAGE = Path(provisioner.__file__).parent


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _imported(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(module, line, inside a function) for every import."""
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                out.append((child.module, child.lineno, in_function))
            visit(child, inner)

    visit(tree, in_function=False)
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_only_serve_imports_the_daemon() -> None:
    importers = {
        _rel(p)
        for p in _modules()
        if not _rel(p).startswith("daemon/")
        and any(
            m == "provisioner.daemon" or m.startswith("provisioner.daemon.")
            for m, _, _ in _imported(ast.parse(p.read_text()))
        )
    }
    assert importers == {"cli/serve.py"}


def test_no_function_level_imports_outside_the_cli() -> None:
    found = {
        f"{_rel(p)}:{line} {module}"
        for p in _modules()
        if not _rel(p).startswith("cli/")
        for module, line, in_function in _imported(ast.parse(p.read_text()))
        if in_function and module.startswith("provisioner")
    }
    assert found == set()


def test_no_service_locator() -> None:
    offenders = [
        _rel(p)
        for p in _modules()
        if "services: dict[str, Any]" in p.read_text() or ".services[" in p.read_text()
    ]
    assert offenders == []


def test_only_the_store_touches_sql() -> None:
    sql = ("sqlalchemy", "sqlmodel", "sqlite3", "aiosqlite", "asyncpg", "alembic")
    users = {
        _rel(p)
        for p in _modules()
        if not _rel(p).startswith("store/")
        and any(m.split(".")[0] in sql for m, _, _ in _imported(ast.parse(p.read_text())))
    }
    assert users == set()
