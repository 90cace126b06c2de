"""Fixtures shared by the whole suite: backends to run against, and a bounded runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import Entity, Runtime, RuntimeConfig
from actors._clock import Clock

TEST_TIME_LIMIT = 60.0


@pytest.fixture
def anyio_backend() -> str:
    # aiosqlite is asyncio-bound; trio joins once the SQLite backend drives sqlite3 itself.
    return "asyncio"


@pytest.fixture(params=["file", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite store URL: a file in a temporary directory, or an in-memory database."""
    if request.param == "file":
        yield f"sqlite:///{tmp_path / 'actors.db'}"
    else:
        yield "sqlite:///:memory:"


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    """A file-backed SQLite URL, for tests that close and reopen the store."""
    return f"sqlite:///{tmp_path / 'actors.db'}"


@asynccontextmanager
async def running(
    url: str,
    *entities: type[Entity],
    clock: Clock | None = None,
    config: RuntimeConfig | None = None,
    limit: float = TEST_TIME_LIMIT,
    **kwargs: Any,
) -> AsyncIterator[Runtime]:
    """A runtime on ``url`` whose whole use is bounded in time."""
    with anyio.fail_after(limit):
        async with Runtime.open(url, entities=entities, clock=clock, config=config, **kwargs) as rt:
            yield rt
