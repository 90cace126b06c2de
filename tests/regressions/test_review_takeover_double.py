"""Review of the multi-node takeover: a message taken in twice, so handled twice.

Seen in ``test_multinode``'s SIGKILL failover, about one run in four: a survivor ran some
of the dead node's messages twice, each time committed (same node, same epoch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
import msgspec
import pytest

from actors import RuntimeConfig
from persistence import ActorId, ActorInit, Enqueue, MessageKind, NewMessage, open_store
from tests.cluster.entities import Add, Counter
from tests.cluster.test_runtime_cluster import nodes
from tests.postgres import fresh_schema_url

pytestmark = pytest.mark.anyio


async def test_a_wake_up_during_a_takeover_does_not_run_the_mail_twice() -> None:
    """A takeover reads y's mailbox, a wake-up runs it meanwhile: it must not run twice.

    ``take_over`` read y's mailbox; a wake-up (another node's NOTIFY for y, now owned here)
    made y's driver read it too and run it; the takeover then delivered what it had read, and
    the driver ran those messages again. Observed: each token twice in the log.
    """
    config = RuntimeConfig(lease=timedelta(seconds=30))
    y = ActorId(entity="counter", key="y")
    async with fresh_schema_url("review") as url, nodes(url, "b", config=config) as (b,):
        # y's mail, stored by a node that is gone: no lease holds y.
        store = await open_store(url)
        try:
            for token in ("t1", "t2", "t3"):
                payload = msgspec.json.encode(Add(token=token))
                message = NewMessage(kind=MessageKind.TELL, handler="add", payload=payload)
                init = ActorInit(retention=60.0)
                await store.write([Enqueue(actor=y, message=message, init=init)], now=1.0)
        finally:
            await store.close()
        cluster = b._cluster
        assert cluster is not None
        epochs = await cluster._leases.claim_orphans(entities=frozenset({"counter"}), limit=10)
        assert list(epochs) == [y]

        async def woken_meanwhile(operation: Callable[[], Awaitable[Any]]) -> Any:
            result = await operation()
            if isinstance(result, list) and result:  # the takeover has read y's mailbox
                b._dispatcher.claimed(y, epochs[y])  # the wake-up
                with anyio.fail_after(10):
                    # The handled messages are in another task's hands: poll the state.
                    while (await b.ref(Counter, "y").ask("snapshot")).count < 3:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
            return result

        await b._recover_mailboxes([y], epochs, woken_meanwhile)
        await anyio.sleep(0.5)  # time for a second run, if one could
        state = await b.ref(Counter, "y").ask("snapshot")
        assert [turn[2] for turn in state.log] == ["t1", "t2", "t3"]
