"""Query plans of SQLite registry queries: the shapes that must stay fast on a large store.

SQLite only (it reads ``EXPLAIN QUERY PLAN``); what the queries return is covered on every
backend by ``test_store_registry.py``. The plans come from the planner statistics that
migration 5 writes, so they do not depend on how many rows the test database holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from persistence import Condition, Op, Query
from persistence._sqlite_query import Select, count, find
from persistence.sqlite import SQLiteStore

LIMIT = 30.0
TEMP_SORT = "USE TEMP B-TREE"


def by(**options: Any) -> Query:
    return Query(entity="order", now=1.0, **options)


EQUAL = (Condition(field="tier", op=Op.EQ, values=("gold",)),)
ABOVE = (Condition(field="amount", op=Op.GT, values=(100,)),)
SEEK_EQUAL = "SEARCH t0 USING INDEX attributes_lookup (entity=? AND name=? AND value=?"
SEEK_ABOVE = "SEARCH t0 USING INDEX attributes_lookup (entity=? AND name=? AND value>?"

# (query, what the plan's first step must be, whether a sort of the rows found is allowed)
SHAPES: dict[str, tuple[Select, str, bool]] = {
    "equality": (find(by(attributes=EQUAL)), SEEK_EQUAL, False),
    "equality, next page": (find(by(attributes=EQUAL, after=("k", "k"))), SEEK_EQUAL, False),
    "equality, counted": (count(by(attributes=EQUAL)), SEEK_EQUAL, False),
    "equality, by time": (find(by(attributes=EQUAL, order_by="created_at")), SEEK_EQUAL, True),
    "range by its attribute": (
        find(by(attributes=ABOVE, order_by="amount", order_attribute=True, limit=10)),
        SEEK_ABOVE,
        False,
    ),
    "range by its attribute, descending, next page": (
        find(
            by(
                attributes=ABOVE,
                order_by="amount",
                order_attribute=True,
                descending=True,
                after=(500, "k"),
                limit=10,
            )
        ),
        SEEK_ABOVE,
        False,
    ),
    # A page deep into a range seeks to the cursor, not to the range's start.
    "range by its attribute, next page": (
        find(by(attributes=ABOVE, order_by="amount", order_attribute=True, after=(900, "k"))),
        "SEARCH t0 USING INDEX attributes_lookup (entity=? AND name=? AND (value,key)>(?,?))",
        False,
    ),
    "between by its attribute, next page": (
        find(
            by(
                attributes=(Condition(field="amount", op=Op.BETWEEN, values=(0, 10**7)),),
                order_by="amount",
                order_attribute=True,
                after=(9 * 10**6, "k"),
            )
        ),
        "(entity=? AND name=? AND (value,key)>(?,?) AND value<?)",
        False,
    ),
    "created_at": (find(by(order_by="created_at")), "USING INDEX actors_created", False),
    # Not indexed on purpose: every turn changes updated_at, and an index on it cost each
    # update about 30% more; ordering by it sorts the entity's actors instead.
    "updated_at, descending, next page": (
        find(by(order_by="updated_at", descending=True, after=(5.0, "k"))),
        "SEARCH a USING PRIMARY KEY (entity=?)",
        True,
    ),
    "completed_at": (find(by(order_by="completed_at")), "USING INDEX actors_completed", False),
}


def explain(conn: sqlite3.Connection, select: Select) -> list[str]:
    rows = conn.execute(f"EXPLAIN QUERY PLAN {select.sql}", select.params).fetchall()
    return [str(row[3]) for row in rows]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A fresh connection to a store file that ``SQLiteStore`` created and migrated."""
    path = tmp_path_factory.mktemp("plans") / "store.db"

    async def create() -> None:
        store = await SQLiteStore.open(str(path))
        await store.close()

    anyio.run(create)
    with closing(sqlite3.connect(path)) as conn:
        yield conn


@pytest.mark.parametrize("shape", SHAPES)
def test_registry_queries_seek_an_index_and_sort_no_more_than_they_find(
    migrated: sqlite3.Connection, shape: str
) -> None:
    """Registry: equality seeks attributes_lookup; an ordered range reads it in order."""
    select, first_step, may_sort = SHAPES[shape]

    plan = explain(migrated, select)

    assert first_step in plan[0], plan
    assert may_sort or not any(TEMP_SORT in step for step in plan), plan


async def test_the_connection_that_migrated_plans_with_the_new_statistics(db_path: Path) -> None:
    """Registry: a store uses the statistics at once, not only after it is reopened."""
    select, first_step, _ = SHAPES["equality"]
    with anyio.fail_after(LIMIT):
        store = await SQLiteStore.open(str(db_path))
        try:
            # The store's own connection: the one that ran the migration.
            rows = await store.run(
                lambda conn: conn.execute(
                    f"EXPLAIN QUERY PLAN {select.sql}", select.params
                ).fetchall()
            )
            plan = [str(row[3]) for row in rows]
        finally:
            await store.close()

    assert first_step in plan[0], plan
    assert not any(TEMP_SORT in step for step in plan), plan
