"""Frozen records exchanged between the runtime and a store.

The runtime describes what a batch must do with these records (admit, enqueue, commit a turn);
a store applies a whole batch in one transaction and answers with one outcome per item. Records
hold encoded payloads (``bytes``) and never runtime objects: this module must not import
``actors``.

Records are frozen ``msgspec.Struct``s made with ``gc=False``: the garbage collector does not
track them, which is safe because they hold values only (bytes, strings, numbers, enums,
tuples, other records, and checked attribute values) and so are never part of a reference
cycle. Copy one with ``msgspec.structs.replace``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Literal

import msgspec

__all__ = [
    "ActorId",
    "ActorInit",
    "ActorRecord",
    "ActorSummary",
    "Admit",
    "AdmitOutcome",
    "AttributeValue",
    "Completion",
    "Condition",
    "Enqueue",
    "EnqueueOutcome",
    "FireOutcome",
    "FireTimers",
    "MessageKind",
    "MessageRecord",
    "NewMessage",
    "NewTimer",
    "Op",
    "Query",
    "Reply",
    "ReplyRecord",
    "SortValue",
    "Status",
    "StoredReply",
    "Successor",
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


class ActorId(msgspec.Struct, frozen=True, kw_only=True, order=True, gc=False):
    """The identity of an actor across generations: entity name and key."""

    entity: str
    key: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.key}"


class ActorRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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
    recent_turns: bytes | None = None
    """The runtime's record of the actor's last turns, as it last wrote it (opaque here)."""

    @property
    def id(self) -> ActorId:
        """The actor's identity."""
        return ActorId(entity=self.entity, key=self.key)


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A durably accepted message. ``id`` orders every mailbox."""

    id: int
    entity: str
    key: str
    generation: int
    kind: MessageKind
    handler: str
    payload: bytes
    created_at: float
    meta: bytes | None = None
    idempotency_key: str | None = None
    timer: str | None = None
    """For a ``timer`` message: the name of the timer that fired it."""
    attempts: int = 0
    """How many restarts found it at the head of its mailbox (see ``Store.record_attempts``)."""
    reply_to: int | None = None
    """With leases: the session of the node whose caller waits for this message's reply."""
    epoch: int | None = None
    """With leases, in a write outcome: the epoch of the writing session's lease on the actor
    if that session owns it (a session claims an actor that no live session owns when it
    stores a message for it), ``None`` if another live session owns it (and was notified)."""


class NewMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A message the runtime wants stored; the store assigns its id and generation.

    ``meta`` is opaque to the store (a duplicate's attributes, for instance). A message with
    an ``idempotency_key`` is stored once per actor: after it is handled its reply is kept
    for the actor's retention window, and a repeat gets that reply.
    """

    kind: MessageKind
    handler: str
    payload: bytes
    meta: bytes | None = None
    idempotency_key: str | None = None
    reply_to: int | None = None
    """With leases: the session whose caller waits for the reply (see :class:`Reply`)."""


class ActorInit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How to create an actor that does not exist yet."""

    retention: float
    attributes: Mapping[str, AttributeValue] = msgspec.field(default_factory=dict)


class Admit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Create the actor with its start message, or hand the message to the one that exists.

    A store applies it as one decision, atomic with the rest of the batch:
    - no record, or a terminal record whose ``expires_at`` has passed: a new generation is
      created (``created=True``) with ``message`` as its first message; an expired record is
      dropped with everything it owned;
    - an ``active`` record: ``message`` is stored as a ``duplicate`` for that generation;
    - a terminal record inside its retention window: nothing is stored and the outcome
      carries the record's status, result and error; unless ``to_terminal``, in which case
      the message is stored as a ``duplicate`` for that terminal generation.
    """

    actor: ActorId
    message: NewMessage
    init: ActorInit
    to_terminal: bool = False


class Enqueue(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Store a message for an actor.

    The message is stored when the actor's current generation is ``active`` (and equals
    ``generation`` when that is given). When there is no live record and ``init`` is given,
    the actor is created first (a virtual actor's first use). Otherwise nothing is stored.
    """

    actor: ActorId
    message: NewMessage
    generation: int | None = None
    init: ActorInit | None = None


class Completion(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How a turn ends its actor's generation."""

    status: Status
    result: bytes | None = None
    error: bytes | None = None


class StoredReply(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The reply kept for a handled message that had an idempotency key."""

    reply: bytes | None = None
    error: bytes | None = None


class Successor(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The next generation a turn starts, in its own commit (supersede, re-run)."""

    init: ActorInit
    message: NewMessage


class NewTimer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A durable timer a turn schedules for its own actor.

    At ``due_at`` (wall-clock seconds) a :class:`FireTimers` moves it into the mailbox as a
    ``timer`` message for ``handler`` with ``payload``. ``name`` is unique per actor: a timer
    scheduled under a name that is pending replaces it, and drops its message if it has
    fired and is still unhandled.
    """

    name: str
    due_at: float
    handler: str
    payload: bytes


class Reply(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The answer to a message whose caller waits on another node (``reply_to``).

    Stored with the turn (unless it is fenced), for session ``session``, which is notified
    and takes it with ``Leases.take_replies``. ``reply``/``error`` are the encoded reply of
    the runtime's ``handler`` tag or an error description (``error_kind`` names the error when
    it is not a handler's failure). With
    ``adopt``, the answer is how that generation of the actor ends. With ``forward``, the
    message went on as the turn's ``successor`` or ``readmit`` message: the stored row names
    that message (or, when the re-admission stored none, ``adopt`` is set to the generation
    that answered it).
    """

    message: int
    session: int
    handler: str | None = None
    reply: bytes | None = None
    error: bytes | None = None
    error_kind: str | None = None
    adopt: int | None = None
    forward: bool = False


class ReplyRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A stored :class:`Reply`, as its session takes it; ``forward`` is the message id."""

    message: int
    handler: str | None
    reply: bytes | None
    error: bytes | None
    error_kind: str | None
    adopt: int | None
    forward: int | None


class TurnCommit(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything one turn did, applied together with the consumption of its message.

    Applied only when the actor's current generation is still ``generation``; either way
    ``readmit`` is applied and the consumed message deleted (unless it has an idempotency
    key and ``reply`` is given: then it is kept, marked handled, with the reply, for the
    actor's retention window).
    ``state`` ``None`` leaves the stored state as it is. A completion sets ``completed_at``
    to the batch time and ``expires_at`` to that plus the actor's retention. A ``successor``
    replaces the (now ended) generation by the next one, with its first message, and
    ``readmit`` is applied as an ``Admit`` after everything else.

    Timers: ``cancel_timers`` are deleted first (with their fired, unhandled messages), then
    ``timers`` are stored for the turn's generation (of two with one name, the last). A
    completion deletes every timer of the actor and their unhandled messages, and the
    completing turn's ``timers`` are not stored: an ended generation has no future. Nor are
    the ``timers`` of a turn of a generation that had already ended.
    """

    actor: ActorId
    generation: int
    consumed: int
    state: bytes | None = None
    set_attributes: Mapping[str, AttributeValue] = msgspec.field(default_factory=dict)
    remove_attributes: Sequence[str] = ()
    outgoing: Sequence[Enqueue] = ()
    completion: Completion | None = None
    reply: StoredReply | None = None
    successor: Successor | None = None
    readmit: Admit | None = None
    timers: Sequence[NewTimer] = ()
    cancel_timers: Sequence[str] = ()
    recent_turns: bytes | None = None
    """If given, replaces the actor's ``recent_turns`` (see :class:`ActorRecord`)."""
    epoch: int | None = None
    """With leases: applied only while the writing session is live and holds the actor's
    lease at this epoch; otherwise nothing of the item is applied (``TurnOutcome.fenced``)."""
    replies: Sequence[Reply] = ()
    """Answers for callers on other nodes, stored whether or not the turn is applied (but
    not when it is fenced: the next owner runs the message again)."""


class FireTimers(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Fire up to ``limit`` timers due at the batch time, earliest first.

    Each fired timer is deleted and its message stored (kind ``timer``, with the timer's
    name, for the generation that scheduled it), atomically: a timer fires once. Ties in
    ``due_at`` fire in scheduling order. A timer whose generation is no longer the active one
    is deleted without firing. Each timer looked at counts against ``limit``, fired or not,
    so fewer than ``limit`` may fire while more are due: call again while
    ``next_timer_due()`` is due. With ``entities``, only timers of those entities are looked
    at (a runtime fires the timers of the entities it hosts; tenants sharing a store leave
    each other's alone).
    """

    limit: int
    entities: frozenset[str] | None = None


class AdmitOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What an :class:`Admit` did.

    With no ``message`` (the actor had ended and its policy does not see duplicates),
    ``result``, ``error`` and ``expires_at`` are the stored record's.
    """

    created: bool
    generation: int
    status: Status
    message: MessageRecord | None
    result: bytes | None = None
    error: bytes | None = None
    expires_at: float | None = None


class EnqueueOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What an :class:`Enqueue` did: ``message`` is ``None`` when nothing was stored.

    ``status`` and ``generation`` describe the actor's current generation (``generation`` 0
    and status ``None`` when there is no live record). When the message's idempotency key was
    already used, ``repeat_of`` is the stored message and ``stored_reply`` its reply (``None``
    while it is still unhandled).
    """

    message: MessageRecord | None
    created: bool
    generation: int
    status: Status | None
    repeat_of: MessageRecord | None = None
    stored_reply: StoredReply | None = None


class TurnOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a :class:`TurnCommit` did; ``outgoing`` pairs with the commit's ``outgoing``.

    ``expires_at`` is when what the turn kept (its completed record, or the reply kept for an
    idempotency key) expires, if it kept anything.
    """

    applied: bool
    outgoing: Sequence[EnqueueOutcome] = ()
    successor: MessageRecord | None = None
    readmitted: AdmitOutcome | None = None
    expires_at: float | None = None
    fenced: bool = False
    """The writing session no longer holds the actor's lease: nothing was applied."""


class BuryMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Move an unhandled message to the dead letters, with why it was given up.

    The dead letter keeps the message's id as its own. A message no longer stored unhandled
    (consumed, or dropped with its generation) is not moved.
    """

    message: int
    attempts: int
    error: str


class BuryOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Whether a :class:`BuryMessage` moved its message."""

    buried: bool


class RetryDeadLetter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Put a dead letter back at the end of its actor's mailbox and delete it.

    The message is stored anew (a new id, no attempts) for the generation it was sent to.
    Not applied (see :class:`RetryOutcome`) when there is no such dead letter (of
    ``entities``, if given), when that generation is gone (a duplicate may go to the next
    one), or when another message holds its idempotency key within its window.
    """

    dead_letter: int
    entities: Collection[str] | None = None


RetryProblem = Literal["unknown", "actor_gone", "key_in_use"]


class RetryOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The message a :class:`RetryDeadLetter` stored, or why it stored none.

    With a problem other than ``unknown``, ``dead_letter`` is the dead letter (kept).
    """

    message: MessageRecord | None
    problem: RetryProblem | None = None
    dead_letter: DeadLetterRecord | None = None


class DeadLetterRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A message given up after ``message.attempts`` tries, kept in the dead letters.

    The dead letter's id is its message's.
    """

    message: MessageRecord
    error: str
    dead_at: float


class FireOutcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a :class:`FireTimers` did: the messages it stored, in firing order.

    A message that a later item of the same batch took back (its timer cancelled or replaced,
    or its actor's generation ended) was not stored and is not listed.
    """

    messages: Sequence[MessageRecord]


WriteItem = Admit | Enqueue | TurnCommit | FireTimers | BuryMessage | RetryDeadLetter
"""One item of a write batch."""

WriteOutcome = (
    AdmitOutcome | EnqueueOutcome | TurnOutcome | FireOutcome | BuryOutcome | RetryOutcome
)
"""What a store did with one item of a write batch."""


class Op(StrEnum):
    """How a :class:`Condition` compares a field with its values."""

    EQ = "eq"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    BETWEEN = "between"  # inclusive at both ends
    IN = "in"
    PREFIX = "prefix"  # strings only
    EXISTS = "exists"
    MISSING = "missing"


class Condition(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One term of a :class:`Query`: ``field`` compared by ``op`` with ``values``.

    ``values`` holds one value for EQ/GT/GE/LT/LE/PREFIX, two for BETWEEN, one or more for
    IN, none for EXISTS/MISSING. On an attribute, a value matches only stored values of its
    own kind: numbers (int and float together), strings, booleans or datetimes; so ``1``
    never matches ``True`` and ``Gt(1)`` never matches a string. The runtime checks these
    shapes; a store may assume them.
    """

    field: str
    op: Op
    values: tuple[AttributeValue, ...] = ()


SortValue = AttributeValue | None
"""The value a query orders by: an attribute's value, a time (epoch seconds), or a key."""


class Query(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A registry query over the live actors of one entity.

    Every condition must hold. ``attributes`` are terms on attribute names; ``times`` are
    terms on ``created_at``, ``updated_at`` or ``completed_at`` with epoch-second values.
    ``statuses`` (empty: any) and ``generation`` narrow further. An actor whose record has
    expired by ``now`` is not live.

    Results are ordered by ``order_by``: ``key``, a time column, or (``order_attribute``)
    the named attribute; ties by key. Ordering by an attribute or by ``completed_at`` leaves
    out the actors that lack it. ``after`` is the (sort value, key) of the last row of the
    previous page: rows strictly after it in this order follow (keyset pagination).
    """

    entity: str
    now: float
    attributes: tuple[Condition, ...] = ()
    times: tuple[Condition, ...] = ()
    statuses: frozenset[Status] = frozenset()
    generation: int | None = None
    order_by: str = "key"
    order_attribute: bool = False
    descending: bool = False
    after: tuple[SortValue, str] | None = None
    limit: int = 50


class TimerRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A stored timer of one actor: at ``due_at`` its message joins the mailbox, once."""

    entity: str
    key: str
    name: str
    generation: int
    due_at: float
    handler: str
    payload: bytes
    created_at: float


class EntityStatistics(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a store holds for one entity, counted at one moment (``Store.statistics``)."""

    entity: str
    actors: Mapping[Status, int]
    """Live actors by status (those past their retention are in ``expired``)."""
    expired: int
    """Ended actors past their retention, not purged yet (they count as absent)."""
    messages: int
    """Stored messages not handled yet, in every mailbox of the entity."""
    kept_replies: int
    """Handled messages kept with their reply for repeats of their idempotency key."""
    timers: int
    dead_letters: int
    oldest_message_at: float | None
    """When the oldest unhandled message was stored: how far behind the mailboxes are."""
    next_timer_at: float | None


class ActorSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a registry query returns for one actor: its record without state or result."""

    entity: str
    key: str
    generation: int
    status: Status
    attributes: Mapping[str, AttributeValue]
    created_at: float
    updated_at: float
    completed_at: float | None
    sort_value: SortValue
