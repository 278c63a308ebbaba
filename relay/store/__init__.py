"""The relay's durable store: one protocol, a backend per URL scheme."""

from __future__ import annotations

from ..redis_url import is_redis
from .base import DeadLetter, EnqueueResult, Job, NewJob, Store, StoreUnavailable
from .redis_store import RedisStore
from .sqlite import SQLiteStore, sqlite_path

__all__ = [
    "DeadLetter",
    "EnqueueResult",
    "Job",
    "NewJob",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "open_store",
]


def open_store(url: str, *, prefix: str = "igbridge", claims: bool = True) -> Store:
    """The backend for ``IGBRIDGE_STORE_URL`` (not yet opened: call ``open()``).

    ``prefix`` keeps several channels apart when they share one Redis. ``claims=False``:
    this process only enqueues (the web side of ``serve``), so it must not release the
    leases of the delivery process that shares the SQLite file, and leaves checkpointing
    the SQLite WAL to that process too."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(
            sqlite_path(url), release_leases_at_open=claims, checkpoint=claims, inline=claims
        )
    if is_redis(url):
        return RedisStore(url, prefix=prefix)
    raise ValueError(
        "IGBRIDGE_STORE_URL: must be sqlite:///PATH, redis://HOST:PORT/DB"
        " or redis+sentinel://HOST:PORT[,HOST:PORT…]/SERVICE/DB"
    )
