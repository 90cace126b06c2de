"""Runs one turn: one message handled by one activation, into a commit record and a reply.

The turn never touches the store. What it produces (``TurnResult``) goes to the writer, which
commits it and only then releases the reply and the outgoing messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from actors import _codec
from actors._activation import Activation, Envelope
from actors._context import Context, error_info
from actors.errors import ActorCompleted, ActorsError, HandlerFailed
from persistence import Completion, MessageKind, Status, TurnCommit

if TYPE_CHECKING:
    from actors._runtime import Runtime

log = structlog.get_logger("actors.turn")


class _Adopt:
    def __repr__(self) -> str:
        return "ADOPT"


ADOPT: Any = _Adopt()
"""The reply that means "your reply is the actor's result, once it completes"."""


@dataclass(slots=True, eq=False)
class TurnResult:
    """A finished turn waiting for its commit."""

    commit: TurnCommit
    activation: Activation
    incarnation: int
    envelope: Envelope
    reply: Any = None
    error: ActorsError | None = None


def _consume_only(
    act: Activation, env: Envelope, error: ActorsError | None, reply: Any = None
) -> TurnResult:
    commit = TurnCommit(actor=act.id, generation=act.generation, consumed=env.record.id)
    return TurnResult(commit, act, act.incarnation, env, reply=reply, error=error)


async def run_turn(rt: Runtime, act: Activation, env: Envelope) -> TurnResult:
    """Handle ``env`` on ``act`` (loaded, same generation) and describe what to commit."""
    record = env.record
    assert act.instance is not None  # the driver loads the activation first
    if act.status is not Status.ACTIVE:
        if record.kind is MessageKind.DUPLICATE:
            return _consume_only(act, env, None, ADOPT)
        error = ActorCompleted(
            entity=act.id.entity, key=act.id.key, generation=act.generation, status=str(act.status)
        )
        return _consume_only(act, env, error)
    if record.kind is MessageKind.DUPLICATE:
        # The default duplicate policy (adopt): the duplicate's reply is the actor's result.
        return _consume_only(act, env, None, ADOPT)
    ctx: Context | None = None
    try:
        spec = act.spec.handler(record.handler)
        if spec.takes_payload:
            what = f"payload of {act.spec.name}.{spec.name}"
            args: tuple[Any, ...] = (_codec.decode(record.payload, spec.payload_type, what=what),)
        else:
            args = ()
        ctx = Context(
            rt,
            act.spec,
            key=act.id.key,
            generation=act.generation,
            message_id=record.id,
            handler=spec.name,
        )
        with structlog.contextvars.bound_contextvars(
            entity=act.id.entity, key=act.id.key, generation=act.generation, message_id=record.id
        ):
            value = await spec.fn(act.instance, ctx, *args)
        _, reply = _codec.check(
            value, spec.reply_type, what=f"reply of {act.spec.name}.{spec.name}"
        )
        state = None
        if act.spec.state_type is not None:
            what = f"state of {act.spec.name}/{act.id.key}"
            data = _codec.encode(act.instance.state, what=what, expected=act.spec.state_type)
            if data != act.state_bytes:
                _codec.decode(data, act.spec.state_type, what=what)
                state = data
    except Exception as exc:
        return _failed(act, env, exc)
    if state is not None:
        act.state_bytes = state
    completion = ctx._completion
    if completion is not None:
        act.status = completion.status
    commit = TurnCommit(
        actor=act.id,
        generation=act.generation,
        consumed=record.id,
        state=state,
        set_attributes=ctx._attributes,
        remove_attributes=tuple(ctx._removed),
        outgoing=tuple(ctx._outgoing),
        completion=completion,
    )
    log.debug(
        "turn_handled",
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        message_id=record.id,
        handler=record.handler,
        completed=None if completion is None else completion.status.value,
    )
    return TurnResult(commit, act, act.incarnation, env, reply=reply)


def _failed(act: Activation, env: Envelope, exc: Exception) -> TurnResult:
    """A turn that raised: nothing it did is kept, except that a failed start fails the actor."""
    record = env.record
    assert act.instance is not None
    act.instance.state = (
        act.spec.new_state()
        if act.state_bytes is None
        else _codec.decode(act.state_bytes, act.spec.state_type, what="state")
    )
    error_type = type(exc).__name__
    if isinstance(exc, HandlerFailed):
        # An ask to another actor failed inside this handler: report the original error.
        error_type, message = exc.error_type, exc.error_message
    else:
        message = str(exc)
    log.warning(
        "handler_failed",
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        message_id=record.id,
        handler=record.handler,
        error_type=error_type,
        error=message,
    )
    failure = HandlerFailed(
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        handler=record.handler,
        error_type=error_type,
        error_message=message,
    )
    completion = None
    if record.kind is MessageKind.START:
        # The start message is the actor's job: if it raises, the actor has failed, and
        # duplicates waiting to adopt its result get the error instead of waiting forever.
        completion = Completion(
            status=Status.FAILED, error=error_info(error_type, message, record.handler)
        )
        act.status = Status.FAILED
    commit = TurnCommit(
        actor=act.id, generation=act.generation, consumed=record.id, completion=completion
    )
    return TurnResult(commit, act, act.incarnation, env, error=failure)
