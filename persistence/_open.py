"""``open_store``: from a URL to an open, migrated store."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from persistence.errors import InvalidStoreUrl, StoreUnavailable
from persistence.sqlite import SQLiteStore
from persistence.store import Store

Durability = Literal["full", "process"]
"""How much a commit survives: ``full`` a power loss, ``process`` a crash of the process."""

DURABILITIES: tuple[Durability, ...] = ("full", "process")
"""Every :data:`Durability`, strongest first."""

_SYNCHRONOUS = {"full": "FULL", "process": "NORMAL"}
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")  # unquoted, folds to itself, fits NAMEDATALEN


def check_durability(durability: object) -> None:
    """Raise ``ValueError`` unless ``durability`` is one of :data:`DURABILITIES`."""
    if durability not in DURABILITIES:
        raise ValueError(f"durability must be 'full' or 'process', got {durability!r}")


async def open_store(
    url: str,
    *,
    durability: Durability = "full",
    migrate: bool = True,
    exclusive: bool | None = None,
) -> Store:
    """Open the store that ``url`` names, creating and migrating its schema as needed.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
            ``sqlite:///:memory:`` (the path percent-decoded: ``%23`` for ``#``, ``%3F``
            for ``?``), or ``postgresql://user@host:port/database`` (also
            ``postgres://``; needs ``keyed-actors[postgres]``). A PostgreSQL URL may name the
            schema to keep the tables in, created if missing: ``?schema=name`` (lower-case
            letters, digits and ``_``); other query parameters go to asyncpg.
        durability: ``full`` (every commit survives power loss) or ``process`` (commits
            survive a crash of the process; the last ones may be lost with the machine). On
            PostgreSQL, ``process`` turns ``synchronous_commit`` off.
        migrate: ``False`` opens an existing store as it is, for an operator's tool: it must
            exist at the current schema version (no file or table is created).
        exclusive: SQLite: hold the file's runtime lock while open, so that no runtime (and
            no other such store) opens it meanwhile; by default a store that migrates (a
            runtime's) does and a tool's does not. PostgreSQL needs no such lock: its nodes
            coordinate through leases, and they notice mail that others store.

    Returns:
        An open store; close it with ``await store.close()``.

    Raises:
        ValueError: ``durability`` is not one of :data:`DURABILITIES`.
        InvalidStoreUrl: the URL is malformed or names an unknown backend.
        StoreUnavailable: the store cannot be opened, or asyncpg is not installed.
        SchemaTooNew: the store was written by a newer version of this library.
    """
    check_durability(durability)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidStoreUrl(f"malformed store URL {url!r}: {exc}") from None
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise InvalidStoreUrl(
                f"malformed SQLite URL {url!r}: use sqlite:///relative.db, "
                "sqlite:////absolute/path.db or sqlite:///:memory:"
            )
        return await SQLiteStore.open(
            unquote(parts.path[1:]),
            synchronous=_SYNCHRONOUS[durability],
            migrate=migrate,
            exclusive=exclusive,
        )
    if parts.scheme in _POSTGRES_SCHEMES:
        dsn, schema = postgres_dsn(url)
        try:
            from persistence.postgres import PostgresStore  # asyncpg is an optional extra
        except ImportError as exc:
            if exc.name != "asyncpg":
                raise
            raise StoreUnavailable(
                "PostgreSQL stores need asyncpg: install keyed-actors[postgres]"
            ) from exc
        return await PostgresStore.open(
            dsn, schema=schema, synchronous_commit=durability == "full", migrate=migrate
        )
    raise InvalidStoreUrl(
        f"no store backend for URL {url!r} (known schemes: sqlite, postgresql, postgres)"
    )


def postgres_dsn(url: str) -> tuple[str, str | None]:
    """The asyncpg connection string of a PostgreSQL store URL, and the schema it names.

    Raises:
        InvalidStoreUrl: the URL is malformed, or its ``schema`` is no plain identifier.
    """
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  # parses the port: a malformed one raises ValueError
    except ValueError as exc:
        raise InvalidStoreUrl(f"malformed PostgreSQL URL {url!r}: {exc}") from None
    if parts.scheme not in _POSTGRES_SCHEMES or parts.fragment or "/" in parts.path[1:]:
        raise InvalidStoreUrl(
            f"malformed PostgreSQL URL {url!r}: use postgresql://user@host:port/database"
            "[?schema=name]"
        )
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidStoreUrl(f"malformed query in PostgreSQL URL {url!r}: {exc}") from None
    schemas = [value for name, value in query if name == "schema"]
    if len(schemas) > 1:
        raise InvalidStoreUrl(f"PostgreSQL URL {url!r} names more than one schema")
    schema = schemas[0] if schemas else None
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise InvalidStoreUrl(
            f"invalid schema {schema!r} in PostgreSQL URL: use 1 to 63 lower-case letters,"
            " digits and '_', not starting with a digit"
        )
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema
