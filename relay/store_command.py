"""What the commands that work on a running relay's store share (``forget``,
``dead-letters``): its settings, and the store opened as a process that hands out no
leases."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .config import ConfigError, Settings, load_settings
from .logs import configure_logging
from .store import Store, open_store

T = TypeVar("T")


def command_settings() -> Settings | None:
    """The ``IGBRIDGE_*`` settings, or None after one line saying what is wrong."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"igbridge-relay: configuration error: {exc}", file=sys.stderr)
        return None
    configure_logging("WARNING")  # the output is the answer; the store's notes only if bad
    return settings


async def on_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on the store the settings name, then close it; ``StoreUnavailable``
    when the store cannot be reached."""
    # claims=False: the running relay holds leases in the same store; leave them be.
    store = open_store(settings.store_url, prefix=settings.store_key_prefix, claims=False)
    await store.open()
    try:
        await store.ping()  # Redis opens even when down: fail here with its reason
        return await work(store)
    finally:
        await store.close()
