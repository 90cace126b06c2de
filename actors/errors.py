"""Errors raised by keyed-actors, grouped by what the caller can do about them.

Tree::

    ActorsError
    ├── InvalidPayload      (ValueError)   a payload, reply, result or state does not fit its type
    ├── InvalidKey          (ValueError)   an actor key that cannot be stored
    ├── InvalidEntity       (TypeError)    an Entity class the runtime cannot register
    ├── UnknownEntity       (LookupError)  an entity type the runtime was not opened with
    ├── UnknownHandler      (LookupError)  a handler the entity does not have
    ├── ActorNotFound       (LookupError)  no such actor, or not that generation
    ├── ActorCompleted                     the actor's generation has ended; no new work
    ├── ActorFailed                        result() of an actor that ended as failed
    ├── HandlerFailed                      a handler raised; its turn changed nothing
    ├── IdempotencyConflict (ValueError)   an idempotency key reused for another message
    ├── InvalidQuery        (ValueError)   a registry query that cannot be run
    ├── AskTimeout          (TimeoutError) no reply in time; the message stays accepted
    ├── Overloaded                         too much accepted and not yet handled; retry later
    ├── DeadlockDetected                   an ask that would wait on an actor waiting on it
    ├── MessageDeadLettered                the message was moved to the dead letters
    ├── StorageError                       the store failed; see __cause__
    └── RuntimeClosed                      the runtime is closed or closing

Errors that describe a remote failure carry its type name and message, never the live
exception, so they mean the same after a restart or on another node.
"""

from __future__ import annotations

__all__ = [
    "ActorCompleted",
    "ActorFailed",
    "ActorNotFound",
    "ActorsError",
    "AskTimeout",
    "DeadlockDetected",
    "HandlerFailed",
    "IdempotencyConflict",
    "InvalidEntity",
    "InvalidKey",
    "InvalidPayload",
    "InvalidQuery",
    "MessageDeadLettered",
    "Overloaded",
    "RuntimeClosed",
    "StorageError",
    "UnknownEntity",
    "UnknownHandler",
]


class ActorsError(Exception):
    """Root of every error keyed-actors raises."""


class InvalidPayload(ActorsError, ValueError):
    """A payload, reply, result or state does not fit its declared type or cannot be encoded.

    Raised by ``ask``/``tell``/``start`` before anything is stored, and inside a turn (which
    then fails) for replies, results and state.

    Attributes:
        what: what was being encoded, e.g. ``"payload of counter.add"``.
        expected: the declared type, as text.
        reason: what was wrong with the value.
    """

    def __init__(self, what: str, expected: str, reason: str) -> None:
        super().__init__(f"{what} does not fit {expected}: {reason}")
        self.what = what
        self.expected = expected
        self.reason = reason


class InvalidKey(ActorsError, ValueError):
    """An actor key is empty, too long, or contains control characters."""


class InvalidEntity(ActorsError, TypeError):
    """An Entity class is missing a name, has malformed handlers, or an unusable state type."""


class UnknownEntity(ActorsError, LookupError):
    """The entity type was not passed to ``Runtime.open(entities=...)``."""


class UnknownHandler(ActorsError, LookupError):
    """The entity has no handler of that name."""


class ActorNotFound(ActorsError, LookupError):
    """There is no such actor, or its current generation is not the one addressed."""


class ActorCompleted(ActorsError):
    """The actor's generation has ended, so it takes no new messages.

    Attributes:
        entity, key, generation: the actor.
        status: its terminal status (``completed``, ``failed``, ``cancelled``, ``superseded``).
    """

    def __init__(self, *, entity: str, key: str, generation: int, status: str) -> None:
        super().__init__(
            f"actor {entity}/{key} (generation {generation}) is {status} and takes no new messages"
        )
        self.entity = entity
        self.key = key
        self.generation = generation
        self.status = status


class _RemoteError(ActorsError):
    def __init__(
        self,
        text: str,
        *,
        entity: str,
        key: str,
        generation: int,
        error_type: str,
        error_message: str,
    ) -> None:
        super().__init__(text)
        self.entity = entity
        self.key = key
        self.generation = generation
        self.error_type = error_type
        self.error_message = error_message


class ActorFailed(_RemoteError):
    """The actor ended as ``failed``: by ``ctx.fail(...)`` or an exception in its start turn.

    Attributes:
        entity, key, generation: the actor.
        error_type: the failure's type name.
        error_message: the failure's message.
    """

    def __init__(
        self, *, entity: str, key: str, generation: int, error_type: str, error_message: str
    ) -> None:
        super().__init__(
            f"actor {entity}/{key} (generation {generation}) failed: {error_type}: {error_message}",
            entity=entity,
            key=key,
            generation=generation,
            error_type=error_type,
            error_message=error_message,
        )


class HandlerFailed(_RemoteError):
    """A handler raised; its turn left state, attributes and outgoing messages unchanged.

    Attributes:
        entity, key, generation: the actor.
        handler: the handler's name.
        error_type: the exception's type name.
        error_message: the exception's message.
    """

    def __init__(
        self,
        *,
        entity: str,
        key: str,
        generation: int,
        handler: str,
        error_type: str,
        error_message: str,
    ) -> None:
        super().__init__(
            f"handler {handler!r} of {entity}/{key} (generation {generation}) raised "
            f"{error_type}: {error_message}",
            entity=entity,
            key=key,
            generation=generation,
            error_type=error_type,
            error_message=error_message,
        )
        self.handler = handler


class AskTimeout(ActorsError, TimeoutError):
    """No reply arrived in time. The message stays accepted and will still be handled."""


class StorageError(ActorsError):
    """The store failed; ``__cause__`` is the :class:`persistence.StoreError`.

    Attributes:
        retryable: whether the same call may succeed if tried again.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Overloaded(ActorsError):
    """The actor's mailbox or the runtime's in-flight work is at its bound; nothing was stored.

    Always retryable: try again once the backlog has drained (with backoff).
    """

    retryable = True


class DeadlockDetected(ActorsError):
    """An ask (or a wait for a result) that could never be answered.

    The target is the asking actor itself, or an actor further up the chain of asks that
    is waiting, directly or not, on the asking turn. Nothing was stored.
    """


class MessageDeadLettered(ActorsError):
    """The message was tried ``max_attempts`` times and moved to the dead letters.

    Attributes:
        dead_letter: the dead letter's id, for ``Runtime.retry_dead_letter`` and
            ``Runtime.discard_dead_letter``.
    """

    def __init__(self, message: str, *, dead_letter: int) -> None:
        super().__init__(message)
        self.dead_letter = dead_letter


class RuntimeClosed(ActorsError):
    """The runtime is closed or closing; the call was not accepted (or its reply is lost)."""


class InvalidQuery(ActorsError, ValueError):
    """A registry query that cannot be run; nothing was read.

    An unknown operator, a value of the wrong type, too many terms, a bad cursor.
    """


class IdempotencyConflict(ActorsError, ValueError):
    """An idempotency key was used again with another handler or payload.

    Nothing was stored: a repeat must be the same message, or it is a different request that
    needs a key of its own.

    Attributes:
        entity, key: the actor.
        idempotency_key: the key that was reused.
    """

    def __init__(self, *, entity: str, key: str, idempotency_key: str, difference: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} of {entity}/{key} was already used with "
            f"{difference}"
        )
        self.entity = entity
        self.key = key
        self.idempotency_key = idempotency_key
