"""Small per-customer state for the guard (loop and spam counters): in memory for one
relay, in the store when replicas share the work.

A customer's inbound messages and the bot's replies to them are often handled by
different replicas, so counters kept per process would each see only a share. Shared state
is one record per customer, changed by compare-and-set and forgotten after ``ttl``; in
memory, idle customers are dropped after the same time so the process does not grow.
With the store away the guard fails open: a fresh state, not saved, so a check never
holds up a customer's message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from .. import records
from ..records import Record
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")
PRUNE_EVERY = 1000  # changes between sweeps of idle customers in memory


class CustomerState(Generic[S]):
    def __init__(
        self,
        record: Record[S],
        *,
        new: Callable[[], S],
        ttl_seconds: float,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._new = new
        self._ttl = ttl_seconds
        self._store = store
        self._clock = clock
        self._memory: dict[str, tuple[float, S]] = {}
        self._changes = 0

    async def change(self, key: str, change: Callable[[S], T]) -> T:
        """Apply ``change`` to the key's state (a fresh one if none) and keep the result."""
        if self._store is None:
            return self._change_in_memory(key, change)
        try:
            return await self._change_shared(self._store, key, change)
        except StoreUnavailable as exc:
            log.warning(
                "guard state unavailable; not checked",
                extra={"namespace": self._record.namespace, "error": str(exc)},
            )
            return change(self._new())

    def _change_in_memory(self, key: str, change: Callable[[S], T]) -> T:
        now = self._clock()
        self._changes += 1
        if self._changes % PRUNE_EVERY == 0:
            idle = [k for k, (seen, _) in self._memory.items() if now - seen > self._ttl]
            for k in idle:
                del self._memory[k]
        seen_state = self._memory.get(key)
        state = seen_state[1] if seen_state else self._new()
        result = change(state)
        self._memory[key] = (now, state)
        return result

    async def _change_shared(self, store: Store, key: str, change: Callable[[S], T]) -> T:
        result: list[T] = []

        def apply(state: S | None) -> S:
            state = self._new() if state is None else state
            result[:] = [change(state)]
            return state

        await records.change(store, self._record, key, apply, ttl_seconds=self._ttl)
        return result[0]
