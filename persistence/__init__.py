"""Storage for keyed-actors: the contract every backend meets, and the backends.

The runtime (``actors``) imports only the names exported here. This package never imports
``actors``.
"""

from __future__ import annotations

from persistence._open import open_store
from persistence.errors import (
    InvalidStoreUrl,
    SchemaTooNew,
    StorageFull,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from persistence.records import (
    ActorId,
    ActorInit,
    ActorRecord,
    ActorSummary,
    Admit,
    AdmitOutcome,
    AttributeValue,
    Completion,
    Condition,
    Enqueue,
    EnqueueOutcome,
    FireOutcome,
    FireTimers,
    MessageKind,
    MessageRecord,
    NewMessage,
    NewTimer,
    Op,
    Query,
    SortValue,
    Status,
    StoredReply,
    Successor,
    TurnCommit,
    TurnOutcome,
    WriteItem,
    WriteOutcome,
)
from persistence.store import Store

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
    "InvalidStoreUrl",
    "MessageKind",
    "MessageRecord",
    "NewMessage",
    "NewTimer",
    "Op",
    "Query",
    "SchemaTooNew",
    "SortValue",
    "Status",
    "StorageFull",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "StoredReply",
    "Successor",
    "TurnCommit",
    "TurnOutcome",
    "WriteItem",
    "WriteOutcome",
    "open_store",
]
