"""ActorRef and StartHandle: what callers hold to address an actor.

Both are handed out by the runtime (``Runtime.ref``, ``Runtime.start``, ``Context.ref``);
users never construct them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final, overload

from actors import _codec
from actors._config import check_duration
from actors._entity import Entity, EntitySpec
from actors._future import Future
from persistence import ActorId, Status

if TYPE_CHECKING:
    from actors._context import Context
    from actors._runtime import Runtime

__all__ = ["ActorRef", "StartHandle"]

E = TypeVar("E", bound=Entity)
P = TypeVar("P")
R = TypeVar("R")


@final
class ActorRef(Generic[E]):
    """The address of one actor: an entity type and a key, optionally one generation.

    A ref without a generation (``Runtime.ref``) addresses whatever generation is current and
    creates the actor on its first message (a virtual actor). A ref with a generation
    (``StartHandle.actor``) addresses that generation only: once it has been purged or
    replaced, calls raise ``ActorNotFound`` rather than reach a newer one.
    """

    __slots__ = ("_id", "_rt", "_spec", "generation")

    def __init__(self, rt: Runtime, spec: EntitySpec, key: str, generation: int | None) -> None:
        self._rt = rt
        self._spec = spec
        self._id = ActorId(entity=spec.name, key=key)
        self.generation = generation

    def _at(self, generation: int | None) -> ActorRef[E]:
        """A ref to the same actor at ``generation`` (its identity is not made again)."""
        ref: ActorRef[E] = ActorRef.__new__(ActorRef)
        ref._rt, ref._spec, ref._id, ref.generation = self._rt, self._spec, self._id, generation
        return ref

    @property
    def entity(self) -> str:
        """The entity name."""
        return self._spec.name

    @property
    def key(self) -> str:
        """The actor's key."""
        return self._id.key

    def __repr__(self) -> str:
        gen = "" if self.generation is None else f" generation={self.generation}"
        return f"<ActorRef {self._id}{gen}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ActorRef)
            and other._id == self._id
            and other.generation == self.generation
        )

    def __hash__(self) -> int:
        return hash((self._id, self.generation))

    def _message(self, handler: Any, payload: Any) -> tuple[EntitySpec, str, bytes]:
        spec, data = self._spec.encode(handler, payload, limit=self._rt.config.max_payload)
        return self._spec, spec.name, data

    @overload
    async def ask(
        self,
        handler: Callable[[E, Context], Awaitable[R]],
        /,
        *,
        timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> R: ...
    @overload
    async def ask(
        self,
        handler: Callable[[E, Context, P], Awaitable[R]],
        payload: P,
        /,
        *,
        timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> R: ...
    @overload
    async def ask(
        self,
        handler: str,
        payload: Any = ...,
        /,
        *,
        timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> Any: ...
    async def ask(
        self,
        handler: Any,
        payload: Any = _codec.NO_PAYLOAD,
        /,
        *,
        timeout: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send a request and wait for the handler's reply.

        Args:
            handler: the handler, as a method (``Counter.add``) or its name.
            payload: the handler's payload; omitted for handlers that take none. At most
                ``RuntimeConfig.max_payload`` bytes encoded.
            timeout: how long to wait for the reply (default: the runtime's ``ask_timeout``):
                a positive timedelta of at most 3650 days.
            idempotency_key: makes the request once-only for this actor: a repeat with the same
                key within the actor's retention window gets the first one's reply (waiting
                for it if it is still being handled) and runs nothing.

        Returns:
            The handler's return value, decoded as its declared return type.

        Raises:
            UnknownHandler: the entity has no such handler.
            InvalidPayload: the payload does not fit the handler, or is over
                ``RuntimeConfig.max_payload`` bytes encoded (nothing was stored).
            InvalidKey: ``idempotency_key`` breaks the rules of keys (nothing was stored).
            ValueError: ``timeout`` is not a positive timedelta of at most 3650 days (nothing
                was stored).
            ActorCompleted: the actor's generation has ended.
            ActorNotFound: this ref's generation is gone.
            HandlerFailed: the handler raised.
            IdempotencyConflict: the key was used before with another handler or payload.
            AskTimeout: no reply in time (the message stays accepted).
            StorageError: the store failed to accept the message.
            RuntimeClosed: the runtime is closed.
        """
        _check_timeout(timeout)
        spec, name, data = self._message(handler, payload)
        return await self._rt._ask(self, spec, name, data, timeout, idempotency_key)

    @overload
    async def tell(
        self,
        handler: Callable[[E, Context], Awaitable[Any]],
        /,
        *,
        idempotency_key: str | None = None,
    ) -> None: ...
    @overload
    async def tell(
        self,
        handler: Callable[[E, Context, P], Awaitable[Any]],
        payload: P,
        /,
        *,
        idempotency_key: str | None = None,
    ) -> None: ...
    @overload
    async def tell(
        self, handler: str, payload: Any = ..., /, *, idempotency_key: str | None = None
    ) -> None: ...
    async def tell(
        self,
        handler: Any,
        payload: Any = _codec.NO_PAYLOAD,
        /,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a one-way message; returns once it is durably accepted.

        With ``idempotency_key``, a repeat within the retention window is accepted without
        being stored again.

        Raises:
            UnknownHandler, InvalidPayload, InvalidKey, ActorCompleted, ActorNotFound,
            IdempotencyConflict, StorageError, RuntimeClosed: as for :meth:`ask`.
        """
        spec, name, data = self._message(handler, payload)
        await self._rt._tell(self, spec, name, data, idempotency_key)

    async def cancel(self, reason: str = "") -> bool:
        """End the actor's active generation as ``cancelled``, in mailbox order.

        The cancel is a message: turns already queued run first. Waiters on ``result()`` and
        adopting duplicates then get ``ActorCompleted`` with status ``cancelled``.

        Args:
            reason: why, as text (at most ``RuntimeConfig.max_payload`` bytes encoded).

        Returns:
            ``True`` if this cancel ended the actor, ``False`` if it had already ended.

        Raises:
            InvalidPayload: ``reason`` is not a str, or is too long (nothing was stored).
            ActorNotFound: no such actor, or not this generation.
        """
        # Checked here, because the cancel turn decodes it as a str.
        _codec.check(
            reason, str, what=f"cancel reason for {self._id}", limit=self._rt.config.max_payload
        )
        return await self._rt._cancel(self, reason)

    async def status(self) -> Status:
        """The actor's durable status (``Status`` compares equal to its string value).

        Raises:
            ActorNotFound: no such actor (never created, or purged), or not this generation.
        """
        return (await self._rt._record(self)).status

    async def result(self, *, timeout: timedelta | None = None) -> Any:
        """Wait for the actor to complete and return its stored result.

        Args:
            timeout: how long to wait (default: the runtime's ``ask_timeout``): a positive
                timedelta of at most 3650 days.

        Raises:
            ValueError: ``timeout`` is out of range.
            ActorFailed: the actor ended as failed.
            ActorCompleted: the actor ended another way (cancelled, superseded).
            ActorNotFound: no such actor, or not this generation.
            AskTimeout: it did not complete in time.
        """
        _check_timeout(timeout)
        return await self._rt._result(self, timeout)


@final
class StartHandle(Generic[E, R]):
    """What ``Runtime.start`` returns. Users never construct it.

    Attributes:
        created: ``True`` for the one caller whose start created this generation.
        actor: a ref to the generation this start reached.
    """

    __slots__ = ("_reply", "_rt", "actor", "created")

    def __init__(self, rt: Runtime, actor: ActorRef[E], created: bool, reply: Future[Any]) -> None:
        self._rt = rt
        self.actor = actor
        self.created = created
        self._reply = reply

    def __repr__(self) -> str:
        return f"<StartHandle {self.actor!r} created={self.created}>"

    async def reply(self, *, timeout: timedelta | None = None) -> R:
        """The reply to this caller's own message.

        For the creator, the start handler's return value. For a duplicate start, the reply
        of the entity's duplicate policy; by default (adopt) the actor's result once it
        completes.

        Args:
            timeout: how long to wait (default: the runtime's ``ask_timeout``): a positive
                timedelta of at most 3650 days.

        Raises:
            ValueError: ``timeout`` is out of range.
            HandlerFailed: the start handler raised.
            ActorFailed: adopting the result of an actor that failed.
            AskTimeout: no reply in time.
        """
        _check_timeout(timeout)
        value: R = await self._rt._await_reply(self.actor, self._reply, timeout)
        return value


def _check_timeout(timeout: timedelta | None) -> None:
    """Refuse a timeout that is not ``None`` or a positive timedelta of at most 3650 days.

    A zero or negative one would time out at once, after the message had been stored.
    """
    if timeout is not None:
        check_duration(timeout, what="timeout")
