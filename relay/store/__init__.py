"""The relay's durable store: one protocol, a backend per URL scheme."""

from __future__ import annotations

from .base import DeadLetter, EnqueueResult, Job, NewJob, Store, StoreUnavailable
from .sqlite import SQLiteStore, sqlite_path

__all__ = [
    "DeadLetter",
    "EnqueueResult",
    "Job",
    "NewJob",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def open_store(url: str) -> Store:
    """The backend for ``IGBRIDGE_STORE_URL`` (not yet opened: call ``open()``)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(sqlite_path(url))
    if url.startswith(("redis://", "rediss://")):
        raise NotImplementedError(
            "IGBRIDGE_STORE_URL: the Redis store is not available in this version; use sqlite:///"
        )
    raise ValueError("IGBRIDGE_STORE_URL: must be sqlite:///PATH or redis://HOST:PORT/DB")
