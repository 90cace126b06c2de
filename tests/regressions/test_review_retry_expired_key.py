"""A dead letter's retry is refused for an idempotency key whose window has passed.

``_Batch.retry`` (persistence/sqlite.py) treats any stored message holding the key as
``key_in_use``, also a kept reply whose ``expires_at`` has passed (not yet purged).
``_Batch.enqueue`` treats that key as free again (a new ask with it runs anew); the retry
should too, instead of raising ``IdempotencyConflict``.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from actors import Context, Entity, MessageDeadLettered, RuntimeConfig, handler
from tests.faults import faulty_store, runtime_on


class Brief(Entity):
    name = "brief"
    retention = timedelta(seconds=0.05)  # replies kept for idempotency keys: 50 ms

    @handler
    async def echo(self, ctx: Context, text: str) -> str:
        return text


async def test_a_dead_letter_can_be_retried_once_its_keys_window_has_passed() -> None:
    async with faulty_store("sqlite:///:memory:") as faulty:
        refusal = faulty.refuse_turns(lambda m: m.payload == b'"poison"')
        config = RuntimeConfig(max_attempts=1, purge_interval=timedelta(hours=1))
        async with runtime_on(faulty, Brief, config=config, limit=5) as rt:
            ref = rt.ref(Brief, "k")
            with pytest.raises(MessageDeadLettered) as caught:
                await ref.ask(Brief.echo, "poison", idempotency_key="key")
            faulty.remove(refusal)
            # The key is free once dead-lettered: another message takes it, and is answered.
            assert await ref.ask(Brief.echo, "other", idempotency_key="key") == "other"
            await anyio.sleep(0.1)  # its window passes (no purge has run)
            assert await rt.retry_dead_letter(caught.value.dead_letter) is True
            assert await ref.ask(Brief.echo, "poison", idempotency_key="key") == "poison"
