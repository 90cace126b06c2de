"""Fixtures of the storage contract suite: every backend the suite runs against, opened fresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from persistence import Store, open_store
from tests.postgres import fresh_schema_url

OPEN_TIME_LIMIT = 30.0


@pytest.fixture
def anyio_backend() -> str:
    # The SQLite backend's thread answers through the asyncio event loop (_sqlite_thread).
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a file-backed store keeps its database."""
    return tmp_path / "store.db"


@pytest.fixture(params=["file", "memory", "postgres"])
async def contract_url(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[str]:
    """The URL of each backend under the contract: SQLite (file, memory), PostgreSQL.

    PostgreSQL gets a fresh schema on the test server (see ``tests/postgres.py``).
    """
    if request.param == "file":
        yield f"sqlite:///{db_path}"
    elif request.param == "memory":
        yield "sqlite:///:memory:"
    else:
        async with fresh_schema_url("contract") as url:
            yield url


@pytest.fixture
async def store(contract_url: str) -> AsyncIterator[Store]:
    """An open, empty store on each backend; closed after the test."""
    with anyio.fail_after(OPEN_TIME_LIMIT):
        opened = await open_store(contract_url)
    try:
        yield opened
    finally:
        with anyio.fail_after(OPEN_TIME_LIMIT):
            await opened.close()
