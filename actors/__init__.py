"""keyed-actors: durable keyed actors for asyncio, embedded in your process.

Every entity key names one durable actor; its messages are handled one at a time, in order,
each turn committed atomically with its effects. See ``Runtime.open`` to begin.
"""

from __future__ import annotations

from actors._clock import Clock, SystemClock
from actors._codec import NO_PAYLOAD
from actors._config import RuntimeConfig
from actors._context import Context
from actors._dead_letters import DeadLetter
from actors._duplicate import Duplicate
from actors._entity import Entity, handler
from actors._query import (
    ActorInfo,
    Between,
    Exists,
    Ge,
    Gt,
    In,
    Le,
    Lt,
    Missing,
    Operator,
    Page,
    Prefix,
)
from actors._refs import ActorRef, StartHandle
from actors._runtime import Runtime, RuntimeStatistics
from actors.errors import (
    ActorCompleted,
    ActorFailed,
    ActorNotFound,
    ActorsError,
    AskTimeout,
    DeadlockDetected,
    HandlerFailed,
    IdempotencyConflict,
    InvalidEntity,
    InvalidKey,
    InvalidPayload,
    InvalidQuery,
    MessageDeadLettered,
    Overloaded,
    RuntimeClosed,
    StorageError,
    UnknownEntity,
    UnknownHandler,
)
from persistence import AttributeValue, Status

__all__ = [
    "NO_PAYLOAD",
    "ActorCompleted",
    "ActorFailed",
    "ActorInfo",
    "ActorNotFound",
    "ActorRef",
    "ActorsError",
    "AskTimeout",
    "AttributeValue",
    "Between",
    "Clock",
    "Context",
    "DeadLetter",
    "DeadlockDetected",
    "Duplicate",
    "Entity",
    "Exists",
    "Ge",
    "Gt",
    "HandlerFailed",
    "IdempotencyConflict",
    "In",
    "InvalidEntity",
    "InvalidKey",
    "InvalidPayload",
    "InvalidQuery",
    "Le",
    "Lt",
    "MessageDeadLettered",
    "Missing",
    "Operator",
    "Overloaded",
    "Page",
    "Prefix",
    "Runtime",
    "RuntimeClosed",
    "RuntimeConfig",
    "RuntimeStatistics",
    "StartHandle",
    "Status",
    "StorageError",
    "SystemClock",
    "UnknownEntity",
    "UnknownHandler",
    "handler",
]
