"""Runs one turn: one message handled by one activation, into a commit record and a reply.

The turn never touches the store. What it produces (``TurnResult``) goes to the writer, which
commits it and only then releases the reply and the outgoing messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from actors import _codec, _deadlock, _recent, _tracing
from actors._activation import Activation, Envelope
from actors._context import ADOPT, SUPERSEDE, Context, _Marker, error_info
from actors._duplicate import Duplicate
from actors._entity import HandlerSpec
from actors._registry import decode_attributes, start_init
from actors.errors import ActorCompleted, ActorsError, HandlerFailed
from persistence import (
    Admit,
    Completion,
    MessageKind,
    NewMessage,
    Status,
    StoredReply,
    TurnCommit,
)

if TYPE_CHECKING:
    from actors._runtime import Runtime

log = structlog.get_logger("actors.turn")


class HandlerTimeout(Exception):
    """A handler ran past its timeout; its turn fails like one that raised."""


READMIT: Any = _Marker("READMIT")
"""A duplicate's reply: whatever the re-admission to the current generation decides."""


@dataclass(slots=True, eq=False)
class TurnResult:
    """A finished turn waiting for its commit."""

    commit: TurnCommit
    activation: Activation
    incarnation: int
    envelope: Envelope
    reply: Any = None
    error: ActorsError | None = None
    # The reply encoded, for a caller on another node (multi-node).
    data: bytes | None = None
    # Multi-node: the epoch of the lease the turn ran under.
    epoch: int | None = None

    @property
    def voided(self) -> tuple[str, ...]:
        """Timers this turn cancels or replaces: a fired message of theirs must not run."""
        commit = self.commit
        if not (commit.cancel_timers or commit.timers):
            return ()  # most turns: twice per turn, without building a tuple
        return (*commit.cancel_timers, *(timer.name for timer in commit.timers))


def _result(
    act: Activation,
    env: Envelope,
    commit: TurnCommit | None = None,
    *,
    reply: Any = None,
    error: ActorsError | None = None,
    data: bytes | None = None,
) -> TurnResult:
    if commit is None:
        commit = TurnCommit(actor=act.id, generation=act.generation, consumed=env.record.id)
    return TurnResult(
        commit, act, act.incarnation, env, reply=reply, error=error, data=data, epoch=act.epoch
    )


async def run_turn(rt: Runtime, act: Activation, env: Envelope) -> TurnResult:
    """Handle ``env`` on ``act`` (loaded, same generation) and describe what to commit.

    The commit carries the actor's recent turns, this one last (``_recent``).
    """
    keep = rt.config.recent_turns
    if not keep:
        result = await _run(rt, act, env)
        if act.recent_bytes not in (None, _recent.NONE):  # kept while turns were noted
            act.recent_bytes = _recent.NONE
            _set_recent(result, _recent.NONE)
        return result
    began = time.perf_counter()
    result = await _run(rt, act, env)
    if act.recent is None:
        act.recent = _recent.encoded(act.recent_bytes)
    record = env.record
    duplicate = record.kind is MessageKind.DUPLICATE and act.spec.on_duplicate is not None
    turn = _recent.TurnNote(
        message=record.id,
        kind=record.kind.value,
        handler="on_duplicate" if duplicate else record.handler,
        at=rt.clock.now(),
        took=round(time.perf_counter() - began, 6),
        outcome=_recent.outcome(result),
    )
    act.recent_bytes = _recent.note(act.recent, turn, keep=keep)
    _set_recent(result, act.recent_bytes)
    return result


def _set_recent(result: TurnResult, notes: bytes) -> None:
    """Put the actor's recent turns in the commit of ``result``, which this turn has made."""
    result.commit = msgspec.structs.replace(result.commit, recent_turns=notes)


async def _run(rt: Runtime, act: Activation, env: Envelope) -> TurnResult:
    record = env.record
    spec = act.spec
    if record.kind is MessageKind.CANCEL:
        return _cancel(act, env)
    if record.kind is MessageKind.DUPLICATE:
        if act.status is Status.SUPERSEDED:
            return forward(act, env)
        if spec.on_duplicate is None:
            # The default policy (adopt): the duplicate's reply is the actor's result.
            return _result(act, env, reply=ADOPT)
        return await _handle(rt, act, env, spec.on_duplicate)
    if act.status is not Status.ACTIVE:
        error = ActorCompleted(
            entity=act.id.entity, key=act.id.key, generation=act.generation, status=str(act.status)
        )
        return _result(act, env, error=error)
    try:
        handler = spec.handler(record.handler)
    except ActorsError as exc:
        return _failed(act, env, record.handler, exc)
    return await _handle(rt, act, env, handler)


async def _handle(rt: Runtime, act: Activation, env: Envelope, handler: HandlerSpec) -> TurnResult:
    record = env.record
    assert act.instance is not None  # loaded by the driver
    assert act.status is not None
    duplicate = record if record.kind is MessageKind.DUPLICATE else None
    ctx = Context(
        rt,
        act.spec,
        key=act.id.key,
        generation=act.generation,
        message_id=record.id,
        handler=handler.name,
        status=act.status,
        duplicate=duplicate,
        epoch=act.epoch,
    )
    what = f"{act.spec.name}.{handler.name}"
    try:
        args: tuple[Any, ...] = ()
        if handler.takes_payload:
            payload = _codec.decode(record.payload, handler.payload_type, what=f"payload of {what}")
            if duplicate is not None:
                payload = Duplicate(
                    payload=payload,
                    attributes=decode_attributes(record.meta),
                    message_id=record.id,
                    received_at=datetime.fromtimestamp(record.created_at, UTC),
                )
            args = (payload,)
        timeout = handler.timeout if handler.timeout is not None else rt.handler_timeout
        assert act.scope is not None  # the driver's (see _mailbox)
        rt._watchdog.enter(act, act.scope, timeout)
        try:
            with _deadlock.turn(act.id, env.chain):
                # Not structlog's bound_contextvars: a generator context manager costs more.
                bound = structlog.contextvars.bind_contextvars(
                    entity=act.id.entity,
                    key=act.id.key,
                    generation=act.generation,
                    message_id=record.id,
                )
                try:
                    value = await handler.fn(act.instance, ctx, *args)
                finally:
                    structlog.contextvars.reset_contextvars(**bound)
        finally:
            # Even if the handler caught the cancellation and returned: the turn failed.
            if rt._watchdog.leave(act):
                raise HandlerTimeout(f"handler {what} did not finish within {timeout:g} s")
        if value is ADOPT or value is SUPERSEDE:
            data, reply = None, value
        else:
            data, reply = _codec.check(
                value, handler.reply_type, what=f"reply of {what}", limit=rt.config.max_payload
            )
        state = None
        if act.spec.state_type is not None:
            where = f"state of {act.spec.name}/{act.id.key}"
            encoded = _codec.encode(act.instance.state, what=where, expected=act.spec.state_type)
            if encoded != act.state_bytes:
                _codec.decode(encoded, act.spec.state_type, what=where)
                state = encoded
    except Exception as exc:
        return _failed(act, env, handler.name, exc)
    if state is not None:
        act.state_bytes = state
    completion = ctx._completion
    if completion is not None:
        act.status = completion.status
    if ctx._successor is not None:
        # Replaced (also when it had already ended): later duplicates of this generation
        # are forwarded to the next one instead of meeting this policy again.
        act.status = Status.SUPERSEDED
    commit = TurnCommit(
        actor=act.id,
        generation=act.generation,
        consumed=record.id,
        state=state,
        set_attributes=ctx._attributes,
        remove_attributes=tuple(ctx._removed),
        outgoing=tuple(ctx._outgoing),
        completion=completion,
        reply=None if record.idempotency_key is None else StoredReply(reply=data),
        successor=ctx._successor,
        timers=tuple(ctx._timers.values()),
        cancel_timers=tuple(ctx._cancelled_timers),
    )
    log.debug(
        "turn_handled",
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        message_id=record.id,
        handler=handler.name,
        completed=None if completion is None else completion.status.value,
    )
    return _result(act, env, commit, reply=reply, data=data)


def _cancel(act: Activation, env: Envelope) -> TurnResult:
    """A cancel ends an active generation as ``cancelled``; on an ended one it does nothing."""
    if act.status is not Status.ACTIVE:
        return _result(act, env, reply=False)
    reason = _codec.decode(env.record.payload, str, what="cancel reason")
    completion = Completion(
        status=Status.CANCELLED, error=error_info("Cancelled", reason, "cancel")
    )
    act.status = Status.CANCELLED
    commit = TurnCommit(
        actor=act.id, generation=act.generation, consumed=env.record.id, completion=completion
    )
    return _result(act, env, commit, reply=True)


def forward(act: Activation, env: Envelope) -> TurnResult:
    """A duplicate that reached a superseded generation goes to the current one instead."""
    record = env.record
    message = NewMessage(
        kind=MessageKind.START, handler=record.handler, payload=record.payload, meta=record.meta
    )
    readmit = Admit(
        actor=act.id,
        message=message,
        init=start_init(record.meta, act.spec.retention),
        to_terminal=act.spec.on_duplicate is not None,
    )
    commit = TurnCommit(
        actor=act.id, generation=record.generation, consumed=record.id, readmit=readmit
    )
    return _result(act, env, commit, reply=READMIT)


def _failed(act: Activation, env: Envelope, handler: str, exc: Exception) -> TurnResult:
    """A turn that raised: nothing it did is kept, except that a failed start fails the actor."""
    record = env.record
    _tracing.turn_failed(exc)  # on the turn's span, with its traceback (when tracing)
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
    # A duplicate refused by the entity's policy is a decision, not a fault.
    refused = record.kind is MessageKind.DUPLICATE
    (log.info if refused else log.warning)(
        "duplicate_refused" if refused else "handler_failed",
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        message_id=record.id,
        handler=handler,
        error_type=error_type,
        error=message,
    )
    failure = HandlerFailed(
        entity=act.id.entity,
        key=act.id.key,
        generation=act.generation,
        handler=handler,
        error_type=error_type,
        error_message=message,
    )
    info = error_info(error_type, message, handler)
    reply = None if record.idempotency_key is None else StoredReply(error=info)
    completion = None
    if record.kind is MessageKind.START and act.status is Status.ACTIVE:
        # The start message is the actor's job: if it raises, the actor has failed, and
        # duplicates waiting to adopt its result get the error instead of waiting forever.
        completion = Completion(status=Status.FAILED, error=info)
        act.status = Status.FAILED
    commit = TurnCommit(
        actor=act.id,
        generation=act.generation,
        consumed=record.id,
        reply=reply,
        completion=completion,
    )
    return _result(act, env, commit, error=failure)
