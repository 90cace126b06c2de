"""The PostgreSQL server the tests use, and fresh schemas on it.

The server is ``$KEYED_ACTORS_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When it cannot be reached, tests that need it
are skipped with the reason, unless ``CI=true``: then they fail, so that CI never passes
without them. Each test gets its own schema (``?schema=...`` in the store URL), dropped with
everything in it afterwards.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio
import pytest

ENV_VAR = "KEYED_ACTORS_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT = 5.0


def server_url() -> str:
    """The URL of the PostgreSQL server (database) the tests use."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` added as its ``schema`` query parameter."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@functools.cache
def _unreachable_reason(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or ``None`` if it can (checked once)."""
    try:
        import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
    except ImportError:
        return "asyncpg is not installed (pip install keyed-actors[postgres])"

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        await conn.close()

    try:
        # On a thread of its own: callers may be inside a running event loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(anyio.run, probe).result()
    except Exception as exc:
        return f"PostgreSQL at {url} is unreachable ({type(exc).__name__}: {exc}); set {ENV_VAR}"
    return None


def require_server() -> str:
    """The server URL; skips the test if it is unreachable (fails instead when CI=true)."""
    url = server_url()
    reason = _unreachable_reason(url)
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return url


async def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def expire_session(url: str, node: str) -> None:
    """Expire the session of ``node`` on the store at ``url``, as a pause past its lease does.

    The node learns at its next renewal that its session is lost.
    """
    import asyncpg

    base, _, schema = url.partition("?schema=")
    conn = await asyncpg.connect(base, server_settings={"search_path": schema})
    try:
        await conn.execute(
            "UPDATE sessions SET expires_at = clock_timestamp() - interval '1 second'"
            " WHERE node = $1",
            node,
        )
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_schema_url(prefix: str = "test") -> AsyncIterator[str]:
    """A store URL on a schema no one has used, dropped when the block ends.

    The store creates the schema when it opens. Skips (or, with CI=true, fails) the test if
    the server is unreachable.
    """
    url = require_server()
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    try:
        yield with_schema(url, schema)
    finally:
        with anyio.fail_after(30, shield=True):
            await drop_schema(url, schema)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL store URL on a fresh schema, dropped after the test."""
    async with fresh_schema_url() as url:
        yield url
