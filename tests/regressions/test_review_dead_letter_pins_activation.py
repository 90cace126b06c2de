"""An actor whose last message was dead-lettered after a refused commit is never idle again.

``Dispatcher.failed`` resets the activation and ``_refused`` takes the envelope out of its
mailbox to bury it; nothing then calls ``_rest_if_idle`` (the driver had already ended while
the commit was in flight, and ``_buried`` does not either). The activation is idle but not in
the table's idle list: it is never passivated (idle timeout) nor evicted to make room, and
holds its ``max_active`` slot for good. With ``max_active=1`` every other actor's messages
then wait in ``_waiting`` forever.
"""

from __future__ import annotations

import anyio
import pytest

from actors import MessageDeadLettered, RuntimeConfig
from persistence import TurnCommit
from tests.entities import Counter
from tests.faults import faulty_store, runtime_on


async def test_a_dead_lettered_actor_gives_its_activation_back() -> None:
    async with faulty_store("sqlite:///:memory:") as faulty:
        faulty.refuse_turns(lambda m: m.payload == b'"poison"')
        # The refusal takes a moment, as a real store's does: the driver has ended by then.
        faulty.slow_writes(0.05, kinds={TurnCommit})
        config = RuntimeConfig(max_attempts=1, max_active=1)
        async with runtime_on(faulty, Counter, config=config, limit=5) as rt:
            with pytest.raises(MessageDeadLettered):
                await rt.ref(Counter, "a").ask(Counter.record, "poison")
            # Another actor needs the only slot: "a" is idle and must make room.
            with anyio.fail_after(2):
                assert await rt.ref(Counter, "b").ask(Counter.add, 1) == 1
