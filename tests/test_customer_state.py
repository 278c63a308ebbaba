"""The guard's per-customer state: kept while it matters, forgotten after, fail-open."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from igbridge.relay.pipeline.customer_state import PRUNE_EVERY, CustomerState
from igbridge.relay.records import Record
from igbridge.relay.store import RedisStore
from tests.harness.redis_server import RedisServer

COUNT: Record[list[int]] = Record(
    "count", lambda raw: list(json.loads(raw)), lambda state: json.dumps(state).encode()
)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def counter(
    store: RedisStore | None = None, clock: Clock | None = None
) -> CustomerState[list[int]]:
    return CustomerState(
        COUNT,
        new=list,
        ttl_seconds=60,
        store=store,
        clock=clock or Clock(),
    )


def bump(state: list[int]) -> int:
    state.append(1)
    return len(state)


def test_in_memory_idle_customers_are_forgotten_so_the_process_does_not_grow() -> None:
    clock = Clock()
    state = counter(clock=clock)

    async def main() -> None:
        assert await state.change("old", bump) == 1
        assert await state.change("old", bump) == 2
        clock.now += 61
        for n in range(PRUNE_EVERY):
            await state.change(f"c{n}", bump)
        assert "old" not in state._memory
        assert await state.change("old", bump) == 1  # a fresh start, as with the store's TTL

    asyncio.run(main())


def test_with_redis_away_the_guard_fails_open(tmp_path: Path) -> None:
    dead = RedisServer(tmp_path / "never-started")

    async def main() -> None:
        store = RedisStore(dead.url, timeout=0.5)
        await store.open()
        try:
            state = counter(store)
            assert await state.change("c", bump) == 1
            assert await state.change("c", bump) == 1  # not saved, never blocking
        finally:
            await store.close()

    asyncio.run(main())
