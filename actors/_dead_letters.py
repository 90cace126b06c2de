"""Dead letters: messages that were tried ``max_attempts`` times, kept for an operator.

A message lands here when its turn kept crashing the process (each restart that finds it at
the head of its mailbox counts an attempt) or when the store refused its turn's commit for
good. Its actor goes on with the next message. ``Runtime.dead_letters`` lists them,
``retry_dead_letter`` puts one back at the end of its actor's mailbox, and
``discard_dead_letter`` drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import final

from actors.errors import ActorNotFound, IdempotencyConflict
from persistence import DeadLetterRecord, RetryOutcome

__all__ = ["DeadLetter", "check_retried"]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message moved out of its actor's mailbox after ``max_attempts`` tries.

    Attributes:
        id: the dead letter's id (for ``retry_dead_letter`` / ``discard_dead_letter``).
        entity, key, generation: the actor and generation the message was for.
        handler: the handler it named.
        kind: ``start``, ``request``, ``tell``, ``duplicate``, ``timer`` or ``cancel``.
        payload: the encoded payload (JSON bytes).
        idempotency_key: the message's idempotency key, if it had one.
        attempts: how many times it was tried.
        error: why it was given up (the last failure).
        dead_at: when it was moved here.
    """

    id: int
    entity: str
    key: str
    generation: int
    handler: str
    kind: str
    payload: bytes
    idempotency_key: str | None
    attempts: int
    error: str
    dead_at: datetime

    @classmethod
    def of(cls, row: DeadLetterRecord) -> DeadLetter:
        """The dead letter a store row describes."""
        message = row.message
        return cls(
            id=message.id,
            entity=message.entity,
            key=message.key,
            generation=message.generation,
            handler=message.handler,
            kind=message.kind.value,
            payload=message.payload,
            idempotency_key=message.idempotency_key,
            attempts=message.attempts,
            error=row.error,
            dead_at=datetime.fromtimestamp(row.dead_at, UTC),
        )


def check_retried(dead_letter: int, outcome: RetryOutcome) -> None:
    """Raise what a ``RetryDeadLetter`` that kept its dead letter ran into.

    Raises:
        ActorNotFound: the dead letter's actor no longer exists.
        IdempotencyConflict: another message holds its idempotency key now.
    """
    dead = outcome.dead_letter
    if dead is None:
        return
    message = dead.message
    if outcome.problem == "actor_gone":
        raise ActorNotFound(
            f"dead letter {dead_letter}: its actor {message.entity}/{message.key} no longer"
            " exists (the dead letter is kept)"
        )
    if outcome.problem == "key_in_use":
        raise IdempotencyConflict(
            entity=message.entity,
            key=message.key,
            idempotency_key=str(message.idempotency_key),
            difference=f"another message after dead letter {dead_letter} was given up",
        )
