"""Logging: every event of a turn carries entity, key, generation and message id."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

from actors import Context, Entity, HandlerFailed, handler
from tests.conftest import running


class Chatty(Entity):
    name = "chatty"

    @handler
    async def speak(self, ctx: Context, words: str) -> None:
        structlog.get_logger("user").info("handler_spoke", words=words)


async def test_turn_events_and_handler_logs_carry_the_actor_context(store_url: str) -> None:
    """Handler code logs with the actor's context, through structlog's contextvars."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running(store_url, Chatty) as rt:
            await rt.ref(Chatty, "k1").ask(Chatty.speak, "hi")
    spoken = [e for e in logs if e["event"] == "handler_spoke"]
    handled = [e for e in logs if e["event"] == "turn_handled"]
    assert len(spoken) == 1
    assert len(handled) == 1
    for event in (spoken[0], handled[0]):
        assert event["entity"] == "chatty"
        assert event["key"] == "k1"
        assert event["generation"] == 1
        assert isinstance(event["message_id"], int)
    assert spoken[0]["message_id"] == handled[0]["message_id"]


async def test_a_failing_handler_is_logged_with_its_error(store_url: str) -> None:
    """handler_failed names the handler and the error."""
    from tests.entities import Counter

    with capture_logs() as logs:
        async with running(store_url, Counter) as rt:
            with pytest.raises(HandlerFailed):
                await rt.ref(Counter, "f").ask(Counter.add_then_fail, 1)
    failed = [e for e in logs if e["event"] == "handler_failed"]
    assert len(failed) == 1
    assert failed[0]["handler"] == "add_then_fail"
    assert failed[0]["error_type"] == "ValueError"
    assert failed[0]["key"] == "f"


async def test_a_duplicate_refused_by_policy_is_logged_as_a_decision(store_url: str) -> None:
    """An exception from ``on_duplicate`` is logged at info as duplicate_refused."""
    from examples.idempotency_policies import RejectDuplicate, first_run
    from persistence import Status

    with capture_logs() as logs:
        async with running(store_url, RejectDuplicate) as rt:
            await first_run(rt, RejectDuplicate, "k", Status.ACTIVE)
            duplicate = await rt.start(RejectDuplicate, "k", "second")
            with pytest.raises(HandlerFailed):
                await duplicate.reply()
    refused = [e for e in logs if e["event"] == "duplicate_refused"]
    assert [(e["log_level"], e["handler"]) for e in refused] == [("info", "on_duplicate")]
    assert not [e for e in logs if e["event"] == "handler_failed"]
