"""Errors a store raises; backends translate driver exceptions into these at their edge.

Tree::

    StoreError
    ├── StoreUnavailable     the store cannot be opened or reached
    ├── StoreBusy            a retryable conflict (locked database, serialization failure)
    ├── StorageFull          no space left for a write (retryable: space may return)
    ├── SchemaTooNew         the store's schema is newer than this code
    └── InvalidStoreUrl      (also ValueError) the URL names no backend we have
"""

from __future__ import annotations

__all__ = [
    "InvalidStoreUrl",
    "SchemaTooNew",
    "StorageFull",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(Exception):
    """Root of every error a store raises."""

    retryable: bool = False


class StoreUnavailable(StoreError):
    """The store cannot be opened or reached."""

    retryable = True


class StoreInUse(StoreUnavailable):
    """A SQLite file is open in a runtime's store already: one runtime per file."""

    retryable = False  # that runtime holds it until it closes


class StoreBusy(StoreError):
    """The store refused a transaction for now (a lock or a serialization conflict)."""

    retryable = True


class StorageFull(StoreError):
    """The store has no space left for a write; nothing in the failed transaction was kept.

    Retryable: space may come back (files deleted, the disk grown, a quota raised).
    """

    retryable = True


class SchemaTooNew(StoreError):
    """The store was written by a newer version of this library.

    Attributes:
        found: the schema version in the store.
        supported: the newest schema version this code knows.
    """

    def __init__(self, *, found: int, supported: int) -> None:
        super().__init__(
            f"the store's schema is version {found}, newer than the {supported} this code "
            "supports; upgrade keyed-actors"
        )
        self.found = found
        self.supported = supported


class InvalidStoreUrl(StoreError, ValueError):
    """The store URL is malformed or names a backend that does not exist."""
