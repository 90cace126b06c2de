"""``open_store``: from a URL to an open, migrated store."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from persistence.errors import InvalidStoreUrl
from persistence.sqlite import SQLiteStore
from persistence.store import Store

Durability = Literal["full", "process"]
"""How much a commit survives: ``full`` a power loss, ``process`` a crash of the process."""

DURABILITIES: tuple[Durability, ...] = ("full", "process")
"""Every :data:`Durability`, strongest first."""

_SYNCHRONOUS = {"full": "FULL", "process": "NORMAL"}


def check_durability(durability: object) -> None:
    """Raise ``ValueError`` unless ``durability`` is one of :data:`DURABILITIES`."""
    if durability not in DURABILITIES:
        raise ValueError(f"durability must be 'full' or 'process', got {durability!r}")


async def open_store(url: str, *, durability: Durability = "full") -> Store:
    """Open the store that ``url`` names, creating and migrating its schema as needed.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
            ``sqlite:///:memory:``.
        durability: ``full`` (every commit survives power loss) or ``process`` (commits
            survive a crash of the process; the last ones may be lost with the machine).

    Returns:
        An open store; close it with ``await store.close()``.

    Raises:
        ValueError: ``durability`` is not one of :data:`DURABILITIES`.
        InvalidStoreUrl: the URL is malformed or names an unknown backend.
        StoreUnavailable: the store cannot be opened.
        SchemaTooNew: the store was written by a newer version of this library.
    """
    check_durability(durability)
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise InvalidStoreUrl(
                f"malformed SQLite URL {url!r}: use sqlite:///relative.db, "
                "sqlite:////absolute/path.db or sqlite:///:memory:"
            )
        return await SQLiteStore.open(parts.path[1:], synchronous=_SYNCHRONOUS[durability])
    raise InvalidStoreUrl(f"no store backend for URL {url!r} (known schemes: sqlite)")
