"""Frozen records exchanged between the runtime and a store.

The runtime describes what a batch must do with these records (admit, enqueue, commit a turn);
a store applies a whole batch in one transaction and answers with one outcome per item. Records
hold encoded payloads (``bytes``) and never runtime objects: this module must not import
``actors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ActorId",
    "ActorInit",
    "ActorRecord",
    "Admit",
    "AdmitOutcome",
    "AttributeValue",
    "Completion",
    "Enqueue",
    "EnqueueOutcome",
    "MessageKind",
    "MessageRecord",
    "NewMessage",
    "Status",
    "TurnCommit",
    "TurnOutcome",
    "WriteItem",
    "WriteOutcome",
]

AttributeValue = str | int | float | bool | datetime
"""The value types an actor attribute may hold."""


class Status(StrEnum):
    """The durable status of one generation of an actor."""

    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        """Whether this status ends the generation (everything but ``active``)."""
        return self is not Status.ACTIVE


class MessageKind(StrEnum):
    """Why a message is in a mailbox."""

    START = "start"
    REQUEST = "request"
    TELL = "tell"
    DUPLICATE = "duplicate"
    TIMER = "timer"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class ActorId:
    """The identity of an actor across generations: entity name and key."""

    entity: str
    key: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRecord:
    """What a store holds for the current generation of one actor."""

    entity: str
    key: str
    generation: int
    status: Status
    state: bytes | None
    result: bytes | None
    error: bytes | None
    attributes: Mapping[str, AttributeValue]
    retention: float
    created_at: float
    updated_at: float
    completed_at: float | None
    expires_at: float | None

    @property
    def id(self) -> ActorId:
        """The actor's identity."""
        return ActorId(entity=self.entity, key=self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """A durably accepted message. ``id`` orders every mailbox."""

    id: int
    entity: str
    key: str
    generation: int
    kind: MessageKind
    handler: str
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message the runtime wants stored; the store assigns its id and generation."""

    kind: MessageKind
    handler: str
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorInit:
    """How to create an actor that does not exist yet."""

    retention: float
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Admit:
    """Create the actor with its start message, or hand the message to the one that exists.

    A store applies it as one decision, atomic with the rest of the batch:
    - no record, or a terminal record whose ``expires_at`` has passed: a new generation is
      created (``created=True``) with ``message`` as its first message; an expired record is
      dropped with everything it owned;
    - an ``active`` record: ``message`` is stored as a ``duplicate`` for that generation;
    - a terminal record inside its retention window: nothing is stored; the outcome carries
      the record's status, result and error.
    """

    actor: ActorId
    message: NewMessage
    init: ActorInit


@dataclass(frozen=True, slots=True, kw_only=True)
class Enqueue:
    """Store a message for an actor.

    The message is stored when the actor's current generation is ``active`` (and equals
    ``generation`` when that is given). When there is no live record and ``init`` is given,
    the actor is created first (a virtual actor's first use). Otherwise nothing is stored.
    """

    actor: ActorId
    message: NewMessage
    generation: int | None = None
    init: ActorInit | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """How a turn ends its actor's generation."""

    status: Status
    result: bytes | None = None
    error: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCommit:
    """Everything one turn did, applied together with the consumption of its message.

    Applied only when the actor's current generation is still ``generation``; the consumed
    message is deleted either way. ``state`` ``None`` leaves the stored state as it is. A
    completion sets ``completed_at`` to the batch time and ``expires_at`` to that plus the
    actor's retention.
    """

    actor: ActorId
    generation: int
    consumed: int
    state: bytes | None = None
    set_attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    remove_attributes: Sequence[str] = ()
    outgoing: Sequence[Enqueue] = ()
    completion: Completion | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmitOutcome:
    """What an :class:`Admit` did."""

    created: bool
    generation: int
    status: Status
    message: MessageRecord | None
    result: bytes | None = None
    error: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueOutcome:
    """What an :class:`Enqueue` did: ``message`` is ``None`` when nothing was stored.

    ``status`` and ``generation`` describe the actor's current generation (``generation`` 0
    and status ``None`` when there is no live record).
    """

    message: MessageRecord | None
    created: bool
    generation: int
    status: Status | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnOutcome:
    """What a :class:`TurnCommit` did; ``outgoing`` pairs with the commit's ``outgoing``."""

    applied: bool
    outgoing: Sequence[EnqueueOutcome] = ()


WriteItem = Admit | Enqueue | TurnCommit
WriteOutcome = AdmitOutcome | EnqueueOutcome | TurnOutcome
