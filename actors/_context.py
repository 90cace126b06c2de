"""Context: what a turn may do. Every effect is buffered and committed with the turn.

Nothing a handler asks of its context is visible outside the actor before the turn commits:
attribute changes, messages to other actors and completion all travel in the turn's commit
record (the output gate).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Never, TypeVar, final, overload

from actors import _codec
from actors._config import MAX_DURATION
from actors._entity import Entity, EntitySpec, check_key
from actors._refs import ActorRef
from actors._registry import (
    MAX_ATTRIBUTES,
    check_attribute_name,
    check_attributes,
    is_text,
    start_init,
)
from actors.errors import InvalidKey
from persistence import (
    ActorInit,
    AttributeValue,
    Completion,
    Enqueue,
    MessageKind,
    MessageRecord,
    NewMessage,
    NewTimer,
    Status,
    Successor,
)

if TYPE_CHECKING:
    from actors._runtime import Runtime

__all__ = ["Context"]

E = TypeVar("E", bound=Entity)
P = TypeVar("P")

MAX_ERROR_MESSAGE = 4096
"""The most characters of a failure's message that are stored; the rest is cut."""


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


ADOPT: Any = _Marker("ADOPT")
"""A duplicate's reply: the actor's result, once it completes."""
SUPERSEDE: Any = _Marker("SUPERSEDE")
"""A duplicate's reply: the start reply of the generation it starts."""


@final
class Context:
    """What a handler may do during its turn. Handed to handlers by the runtime.

    Users never construct a Context. Its effects take place only if the turn completes
    without raising, together with the turn's new state and its reply.

    Attributes:
        entity: the actor's entity name.
        key: the actor's key.
        generation: the actor's generation.
        message_id: the id of the message being handled.
        handler: the name of the handler running.
        status: the actor's status as the turn began (``active``, or the terminal status of
            an ended actor whose ``on_duplicate`` is handling a late duplicate).
        epoch: on a store shared by several nodes, the fencing epoch of this node's lease
            on the actor (it grows each time the actor changes nodes); ``None`` otherwise.
    """

    __slots__ = (
        "_attributes",
        "_cancelled_timers",
        "_completion",
        "_duplicate",
        "_generated",
        "_outgoing",
        "_removed",
        "_rt",
        "_spec",
        "_successor",
        "_timers",
        "entity",
        "epoch",
        "generation",
        "handler",
        "key",
        "message_id",
        "status",
    )

    def __init__(
        self,
        rt: Runtime,
        spec: EntitySpec,
        *,
        key: str,
        generation: int,
        message_id: int,
        handler: str,
        status: Status,
        duplicate: MessageRecord | None = None,
        epoch: int | None = None,
    ) -> None:
        self._rt = rt
        self._spec = spec
        self.entity = spec.name
        self.key = key
        self.generation = generation
        self.message_id = message_id
        self.handler = handler
        self.status = status
        self.epoch = epoch
        self._duplicate = duplicate
        self._successor: Successor | None = None
        self._attributes: dict[str, AttributeValue] = {}
        self._removed: set[str] = set()
        self._outgoing: list[Enqueue] = []
        self._completion: Completion | None = None
        self._timers: dict[str, NewTimer] = {}
        self._cancelled_timers: dict[str, None] = {}  # an ordered set
        self._generated = 0  # timer ids generated in this turn

    @property
    def node_id(self) -> str | None:
        """The node running this turn, on a store shared by several nodes; else ``None``."""
        cluster = self._rt._cluster
        return None if cluster is None else cluster.node

    def now(self) -> datetime:
        """The runtime clock's current time (UTC)."""
        return datetime.fromtimestamp(self._rt.clock.now(), UTC)

    def set_attributes(self, **values: AttributeValue) -> None:
        """Set registry attributes of this actor, committed with the turn.

        Raises:
            ValueError: a name or value is not a valid attribute, or this turn would set more
                than 64 attributes.
        """
        checked = check_attributes(values, self._spec.attribute_types)
        if len(self._attributes.keys() | checked.keys()) > MAX_ATTRIBUTES:
            raise ValueError(
                f"at most {MAX_ATTRIBUTES} attributes per actor; this turn would set "
                f"{len(self._attributes.keys() | checked.keys())}"
            )
        self._removed.difference_update(checked)
        self._attributes.update(checked)

    def remove_attributes(self, *names: str) -> None:
        """Remove registry attributes of this actor, committed with the turn.

        Raises:
            ValueError: a name is not a valid attribute name.
        """
        for name in names:
            check_attribute_name(name)
            self._attributes.pop(name, None)
            self._removed.add(name)

    def complete(self, result: Any = None) -> None:
        """End this generation as ``completed`` with ``result``, when the turn commits.

        The result is stored for the actor's retention window; ``ActorRef.result()`` and
        duplicate starts receive it.

        Raises:
            InvalidPayload: ``result`` does not fit the entity's result type, or is over
                ``RuntimeConfig.max_payload`` bytes encoded.
            RuntimeError: the turn already completed or failed the actor.
        """
        what = f"result of {self.entity}/{self.key}"
        limit = self._rt.config.max_payload
        data, _ = _codec.check(result, self._spec.result_type, what=what, limit=limit)
        self._finish(Completion(status=Status.COMPLETED, result=data))

    def fail(self, error: str | BaseException) -> None:
        """End this generation as ``failed`` with ``error``, when the turn commits.

        ``ActorRef.result()`` and duplicate starts then raise ``ActorFailed``. A message over
        4096 characters is cut to that length when stored.

        Raises:
            TypeError: ``error`` is neither a str nor an exception.
            RuntimeError: the turn already completed or failed the actor.
        """
        if isinstance(error, BaseException):
            info = error_info(type(error).__name__, str(error), self.handler)
        elif isinstance(error, str):
            info = error_info("Failure", error, self.handler)
        else:
            raise TypeError(f"fail() takes a str or an exception, got {type(error).__name__}")
        self._finish(Completion(status=Status.FAILED, error=info))

    def reply_on_completion(self) -> Never:
        """Return this from ``on_duplicate`` to adopt: reply with the actor's result.

        It returns a marker the runtime recognizes; it is typed ``Never`` so that
        ``return ctx.reply_on_completion()`` fits any declared reply type.

        The duplicate caller is answered when the actor completes (with its result) or fails
        (with ``ActorFailed``); the mailbox is not blocked meanwhile. On an ended actor the
        stored result answers at once.
        """
        return ADOPT  # type: ignore[misc]  # a marker, typed Never on purpose

    def supersede(self, payload: Any = _codec.NO_PAYLOAD) -> Never:
        """Return this from ``on_duplicate`` to replace this generation by a new one.

        Like :meth:`reply_on_completion`, it returns a marker typed ``Never``.

        When the turn commits, an active generation ends as ``superseded``, and generation
        n+1 is created with the duplicate's payload (or ``payload``) as its start message, in
        the same transaction: a concurrent start sees the old generation or the new one,
        never neither. On an ended actor (e.g. to re-run a failed one) only the new
        generation is created. The duplicate caller's reply is the new start's reply.

        Raises:
            RuntimeError: not called from ``on_duplicate``, or already ended in this turn.
            InvalidPayload: ``payload`` does not fit the start handler, or is over
                ``RuntimeConfig.max_payload`` bytes encoded.
        """
        duplicate = self._duplicate
        if duplicate is None:
            raise RuntimeError("supersede() is for on_duplicate, which handles a duplicate start")
        data = duplicate.payload
        if payload is not _codec.NO_PAYLOAD:
            start = self._spec.handler(duplicate.handler)
            what = f"payload of {self.entity}.{start.name}"
            limit = self._rt.config.max_payload
            data, _ = _codec.check(payload, start.payload_type, what=what, limit=limit)
        if self.status is Status.ACTIVE:
            self._finish(Completion(status=Status.SUPERSEDED))
        elif self._successor is not None:
            raise RuntimeError(f"{self.entity}/{self.key} is already superseded in this turn")
        self._successor = Successor(
            init=start_init(duplicate.meta, self._spec.retention),
            message=NewMessage(
                kind=MessageKind.START, handler=duplicate.handler, payload=data, meta=duplicate.meta
            ),
        )
        return SUPERSEDE  # type: ignore[misc]  # a marker, typed Never on purpose

    def _finish(self, completion: Completion) -> None:
        if self.status.terminal:
            raise RuntimeError(
                f"{self.entity}/{self.key} has already ended ({self.status}); only supersede() "
                "may follow it with a new generation"
            )
        if self._completion is not None:
            raise RuntimeError(
                f"{self.entity}/{self.key} is already {self._completion.status} in this turn"
            )
        self._completion = completion

    @overload
    def schedule(
        self,
        handler: Callable[[Any, Context], Awaitable[Any]],
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
    ) -> str: ...
    @overload
    def schedule(
        self,
        handler: Callable[[Any, Context, P], Awaitable[Any]],
        payload: P,
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
    ) -> str: ...
    @overload
    def schedule(
        self,
        handler: str,
        payload: Any = ...,
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
    ) -> str: ...
    def schedule(
        self,
        handler: Any,
        payload: Any = _codec.NO_PAYLOAD,
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
    ) -> str:
        """Schedule a durable timer: this actor's ``handler`` gets ``payload`` when it is due.

        The timer is stored when the turn commits, and fires once, as a message through the
        mailbox, at or soon after its time, also after a restart (a timer that came due while
        the process was down fires when it starts). Timers due together fire in order of due
        time. When this generation ends (completed, failed, cancelled, superseded), its
        pending timers are dropped.

        Args:
            handler: a handler of this actor's entity.
            payload: its payload (at most ``RuntimeConfig.max_payload`` bytes encoded).
            after: fire this long after now (``ctx.now()``), at most 3650 days.
            at: fire at this time (a timezone-aware datetime; in the past fires at once), at
                most 3650 days after now.
            name: the timer's id. Scheduling a name that is still pending replaces that timer
                (a fired, not yet handled one is dropped). By default a new unique id.

        Returns:
            The timer's id, for :meth:`cancel_timer`.

        Raises:
            ValueError: not exactly one of ``after`` / ``at``; ``after`` negative or over
                3650 days; ``at`` naive or over 3650 days from now.
            InvalidKey: ``name`` breaks the rules of keys, or starts with ``#`` (kept for
                generated ids).
            UnknownHandler: the entity has no such handler.
            InvalidPayload: ``payload`` does not fit the handler's payload type, or is over
                ``RuntimeConfig.max_payload`` bytes encoded.
        """
        if (after is None) == (at is None):
            raise ValueError("schedule() needs exactly one of after= or at=")
        now = self._rt.clock.now()
        if after is not None:
            if not isinstance(after, timedelta) or not timedelta(0) <= after <= MAX_DURATION:
                raise ValueError(
                    f"after must be a timedelta >= 0 and at most 3650 days, got {after!r}"
                )
            due = now + after.total_seconds()
        else:
            if not isinstance(at, datetime) or at.utcoffset() is None:
                raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
            due = at.timestamp()
            if due - now > MAX_DURATION.total_seconds():
                raise ValueError(f"at must be at most 3650 days from now, got {at.isoformat()}")
        if name is None:
            name = f"#{self.message_id}.{self._generated}"
            self._generated += 1
        else:
            _check_timer_name(name)
        target, data = self._spec.encode(handler, payload, limit=self._rt.config.max_payload)
        self._timers[name] = NewTimer(name=name, due_at=due, handler=target.name, payload=data)
        return name

    def cancel_timer(self, timer_id: str) -> None:
        """Cancel a timer of this actor, when the turn commits.

        Once the turn has committed, the timer's handler will not run, also if the timer
        has already fired and its message waits in the mailbox. Cancelling a timer that
        has run, or never existed, does nothing.

        Raises:
            InvalidKey: ``timer_id`` is not a string, or breaks the rules of keys (so no timer
                can have it).
        """
        check_key(timer_id, what="a timer id")
        self._timers.pop(timer_id, None)
        self._cancelled_timers[timer_id] = None

    def ref(self, entity: type[E], key: str) -> ActorRef[E]:
        """A reference to the actor of ``entity`` with ``key`` (created on first message)."""
        return self._rt.ref(entity, key)

    @overload
    def tell(
        self, ref: ActorRef[E], handler: Callable[[E, Context], Awaitable[Any]], /
    ) -> None: ...
    @overload
    def tell(
        self,
        ref: ActorRef[E],
        handler: Callable[[E, Context, P], Awaitable[Any]],
        payload: P,
        /,
    ) -> None: ...
    @overload
    def tell(self, ref: ActorRef[E], handler: str, payload: Any = ..., /) -> None: ...
    def tell(self, ref: ActorRef[Any], handler: Any, payload: Any = _codec.NO_PAYLOAD, /) -> None:
        """Send a one-way message to ``ref``, delivered exactly once if this turn commits.

        Raises:
            TypeError: ``ref`` is not an ActorRef.
            UnknownHandler: the target entity has no such handler.
            InvalidPayload: ``payload`` does not fit the handler's payload type, or is over
                ``RuntimeConfig.max_payload`` bytes encoded.
        """
        if not isinstance(ref, ActorRef):
            raise TypeError(f"tell() sends to an ActorRef (ctx.ref(...)), got {ref!r}")
        spec, name, data = ref._message(handler, payload)
        self._outgoing.append(
            Enqueue(
                actor=ref._id,
                message=NewMessage(kind=MessageKind.TELL, handler=name, payload=data),
                generation=ref.generation,
                init=None if ref.generation is not None else ActorInit(retention=spec.retention),
            )
        )


def _check_timer_name(name: object) -> None:
    if check_key(name, what="a timer name").startswith("#"):
        raise InvalidKey(f"a timer name must not start with '#' (kept for generated ids): {name!r}")


def error_info(error_type: str, message: str, handler: str) -> bytes:
    """The stored description of a failure; a message over 4096 characters is cut."""
    if len(message) > MAX_ERROR_MESSAGE:
        cut = len(message) - MAX_ERROR_MESSAGE
        message = f"{message[:MAX_ERROR_MESSAGE]}... ({cut:,} more characters cut)"
    if not is_text(message):  # a lone surrogate, from an exception's text
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return _codec.encode(
        {"type": error_type, "message": message, "handler": handler},
        what="error description",
        expected=dict,
    )


def read_error_info(data: bytes | None) -> tuple[str, str]:
    """(type, message) of a stored failure description."""
    if not data:
        return "Failure", ""
    info = _codec.decode(data, dict[str, str], what="error description")
    return info.get("type", "Failure"), info.get("message", "")
