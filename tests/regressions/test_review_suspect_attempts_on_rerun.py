"""A suspect whose commit fails (retryably) records one more crash attempt at every re-run.

``Dispatcher._gate`` records an attempt each time a suspect envelope passes it, and the
envelope stays ``suspect`` across ``Activation.reset``. A suspect turn re-run because the
store was busy (``StoreBusy`` past the writer's retries) so counts crashes that never
happened; after a graceful restart the message is dead-lettered at recovery
(``attempts >= max_attempts``) although it never crashed anything and a busy store is
documented as retried, not counted.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from actors import RuntimeConfig
from persistence import (
    ActorId,
    ActorInit,
    Enqueue,
    MessageKind,
    NewMessage,
    StoreBusy,
    TurnCommit,
    open_store,
)
from tests.entities import Counter
from tests.faults import faulty_store, runtime_on, until

A = ActorId(entity="counter", key="a")


async def test_a_busy_store_does_not_count_as_crashes_of_a_suspect(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    store = await open_store(url)
    try:
        [outcome] = await store.write(
            [
                Enqueue(
                    actor=A,
                    message=NewMessage(kind=MessageKind.TELL, handler="record", payload=b'"m"'),
                    init=ActorInit(retention=60.0),
                )
            ],
            now=time.time(),
        )
        await store.record_attempts([outcome.message.id])  # type: ignore[union-attr]
    finally:
        await store.close()

    config = RuntimeConfig(max_attempts=4, close_timeout=timedelta(seconds=0.1))
    async with faulty_store(url) as faulty:
        faulty.fail_writes(None, error=StoreBusy, kinds={TurnCommit})  # busy for a while

        async with runtime_on(faulty, Counter, config=config, limit=5):
            # The suspect runs three times: its first two commits fail past the writer's
            # four tries each, the third is failing too when the runtime closes.
            await until(lambda: faulty.injected["write"] >= 9, timeout=4)

    # A graceful restart, the store fine again: the message should simply run.
    async with faulty_store(url) as faulty, runtime_on(faulty, Counter, config=config) as rt:
        assert await rt.dead_letters() == []
        assert await rt.ref(Counter, "a").ask(Counter.seen) == ["m"]
