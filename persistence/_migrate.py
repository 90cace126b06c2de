"""Schema versions: find a backend's migration files and apply the missing ones in order.

Migration files live in ``persistence/schema/<backend>/NNNN_what.sql``; version N is the file
numbered N. This module knows nothing of any driver: a backend passes the versions it has
applied and gets back the scripts still to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from persistence.errors import SchemaTooNew

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str) -> list[Migration]:
    """Every migration shipped for ``backend``, in version order, numbered without gaps."""
    folder = resources.files("persistence").joinpath("schema", backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(
                Migration(version=int(match[1]), name=entry.name, sql=entry.read_text("utf-8"))
            )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations for {backend} are not numbered 1..n: {found}")
    return found


def pending(backend: str, *, current: int, target: int | None = None) -> list[Migration]:
    """The migrations that take a store at version ``current`` to ``target`` (default: newest).

    Raises:
        SchemaTooNew: the store is at a version this code does not know.
    """
    shipped = migrations(backend)
    newest = len(shipped)
    if current > newest:
        raise SchemaTooNew(found=current, supported=newest)
    stop = newest if target is None else target
    return [m for m in shipped if current < m.version <= stop]
