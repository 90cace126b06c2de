"""The layering rules of STYLE.md ("Layout"), checked by parsing every module's imports.

``persistence`` never imports ``actors``. ``actors`` reaches storage only through
``persistence``'s public names, never a backend module or a database driver, uses anyio rather
than asyncio, and holds no SQL.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import persistence

ROOT = Path(__file__).resolve().parent.parent
BANNED_IN_ACTORS = frozenset({"asyncio", "aiosqlite", "asyncpg"})
SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE FROM|CREATE TABLE)\s")


@dataclass(frozen=True, slots=True)
class Imported:
    """One module an import statement may load, and where the statement is."""

    module: str
    line: int


def package_of(path: Path) -> str:
    """The dotted package that a module file at ``path`` belongs to."""
    return ".".join(path.relative_to(ROOT).parent.parts)


def imports(source: str, *, package: str) -> Iterator[Imported]:
    """Every module an import in ``source`` names, relative imports resolved.

    ``from p import name`` yields both ``p`` and ``p.name``, since ``name`` may be a submodule.
    Imports anywhere count: in functions, classes and ``if TYPE_CHECKING:`` blocks alike.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Imported(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield Imported(module, node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    yield Imported(f"{module}.{alias.name}", node.lineno)


def sql_literals(source: str) -> Iterator[tuple[int, str]]:
    """String literals in ``source`` that read as SQL statements (uppercase keywords)."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if SQL.search(node.value):
            yield node.lineno, node.value


def modules(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no modules found under {ROOT / package}"
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def actors_violations(source: str, *, package: str = "actors") -> list[str]:
    """Why ``source``, as a module of ``actors``, breaks the layering (empty if it does not)."""
    public = set(persistence.__all__)
    found: list[str] = []
    for imported in imports(source, package=package):
        top = imported.module.split(".")[0]
        if top in BANNED_IN_ACTORS:
            found.append(f"line {imported.line}: imports {imported.module}")
        elif top == "persistence" and imported.module != "persistence":
            name = imported.module.removeprefix("persistence.")
            if name not in public:
                found.append(f"line {imported.line}: imports {imported.module}")
    for line, text in sql_literals(source):
        found.append(f"line {line}: SQL in a string literal: {text.strip()[:60]!r}")
    return found


@pytest.mark.parametrize("path", modules("persistence"), ids=lambda p: p.name)
def test_persistence_never_imports_actors(path: Path) -> None:
    """Layering: the storage layer knows nothing of the runtime above it."""
    offending = [
        f"line {imported.line}: imports {imported.module}"
        for imported in imports(path.read_text("utf-8"), package=package_of(path))
        if is_within(imported.module, "actors")
    ]

    assert offending == []


@pytest.mark.parametrize("path", modules("actors"), ids=lambda p: p.name)
def test_actors_reaches_storage_only_through_persistence_public_names(path: Path) -> None:
    """Layering: no backend module, no driver, no asyncio and no SQL in the runtime."""
    assert actors_violations(path.read_text("utf-8"), package=package_of(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import asyncio.tasks as t",
        "from asyncio import sleep",
        "import aiosqlite",
        "from asyncpg import connect",
        "import persistence.sqlite",
        "from persistence.sqlite import SQLiteStore",
        "from persistence import sqlite",
        "from persistence import _migrate",
        "from persistence._open import open_store",
        "from persistence.postgres import PostgresStore",
        "from persistence.records import Status",
        "def f():\n    import asyncio\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from persistence import sqlite\n",
        "QUERY = 'SELECT generation FROM actors'",
        "def f():\n    return f'UPDATE actors SET x = {1}'",
        "SQL = '''\nDELETE FROM messages WHERE id = ?'''",
        "DDL = 'CREATE TABLE t (x)'",
        "INSERT = 'INSERT INTO t VALUES (1)'",
    ],
)
def test_the_layering_check_flags_each_kind_of_violation(source: str) -> None:
    """The checker itself: every forbidden form is caught, so a clean result means something."""
    assert actors_violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from persistence import ActorId, Status, Store, open_store",
        "import persistence",
        "import anyio",
        "from actors._codec import NO_PAYLOAD",
        "from . import _codec",
        "from ._codec import NO_PAYLOAD",
        "MESSAGE = 'select a handler to update the insert point'",
        "TEXT = 'SELECTION and UPDATED are not SQL'",
    ],
)
def test_the_layering_check_allows_what_the_rules_allow(source: str) -> None:
    """The checker itself: public persistence names, anyio and prose pass."""
    assert actors_violations(source) == []


def test_relative_imports_resolve_against_the_importing_package() -> None:
    """The checker itself: relative imports are named by the module they load."""
    from_actors = {i.module for i in imports("from ._turn import run", package="actors")}
    from_schema = {
        i.module for i in imports("from .. import records", package="persistence.schema")
    }

    assert from_actors == {"actors._turn", "actors._turn.run"}
    assert from_schema == {"persistence", "persistence.records"}
