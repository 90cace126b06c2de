"""A writer stopped while it re-commits a refused batch one item at a time loses the rest.

``Writer._commit`` re-commits the items of a batch refused for good one by one from inside its
``except StoreError`` block. When the writer is cancelled (shutdown past ``close_timeout``)
during one of those single commits, only that item goes to ``leftover``; the items after it
are neither committed, failed nor left over, so ``Dispatcher.abandon`` never answers their
callers: a caller waits forever, after the runtime has closed.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from actors import Runtime, RuntimeClosed, RuntimeConfig
from persistence import ActorId, Enqueue, StoreBusy, StoreError
from tests.entities import Counter
from tests.faults import faulty_store, until


async def test_callers_of_a_batch_being_recommitted_are_answered_when_the_runtime_closes() -> None:
    outcomes: dict[str, str] = {}

    async def call(rt: Runtime, key: str) -> None:
        try:
            with anyio.fail_after(1):
                await rt.ref(Counter, key).tell(Counter.add, 1)
            outcomes[key] = "stored"
        except RuntimeClosed:
            outcomes[key] = "RuntimeClosed"
        except TimeoutError:
            outcomes[key] = "never answered"

    async with faulty_store("sqlite:///:memory:") as faulty:
        # The batch of both enqueues is refused for good; then "a" alone keeps hitting a
        # busy store, so the writer sits in the retry backoff of the one-by-one path.
        faulty.fail_writes(1, error=StoreError, kinds={Enqueue})
        faulty.fail_writes(None, error=StoreBusy, actor=ActorId(entity="counter", key="a"))
        config = RuntimeConfig(close_timeout=timedelta(seconds=0.05))
        with anyio.fail_after(5):
            # The runtime closes first (inner block), then the callers are awaited.
            async with (
                anyio.create_task_group() as callers,
                Runtime.open(faulty, entities=[Counter], config=config) as rt,
            ):
                callers.start_soon(call, rt, "a")
                callers.start_soon(call, rt, "b")
                await until(lambda: faulty.injected["write"] >= 2)  # in the one-by-one path
    assert faulty.log[0].kinds == ("Enqueue", "Enqueue")  # one batch, refused for good
    assert outcomes == {"a": "RuntimeClosed", "b": "RuntimeClosed"}
