"""The SLA sweep's cost follows what is due, not every customer ever seen; per-customer
records are forgotten after their time to live. On both stores (SQLite and a real
redis-server), against a fake Genesys over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from igbridge.relay import records
from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.rest import GenesysRest
from igbridge.relay.http import new_session
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.pipeline.window import HOUR_MS, CommentOrigin
from igbridge.relay.records import (
    COMMENT_ORIGIN,
    COMMENT_ORIGIN_TTL_SECONDS,
    CONVERSATION_TTL_SECONDS,
    CONVERSATIONS,
)
from igbridge.relay.store import RedisStore, Store
from igbridge.relay.tasks.sla import (
    SlaClock,
    SlaSweeper,
    customer_answered,
    customer_waiting,
)
from igbridge.sandbox.server import ThreadedServer, serve_in_thread
from tests.test_store_contract import Backend, Clock

ESCALATE_AFTER = 20 * 3600.0


@dataclass
class FakeGenesys:
    """Grants tokens and records routing-priority changes, as Genesys's API is called."""

    priorities: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def token(_: Request) -> JSONResponse:
            return JSONResponse({"access_token": "t", "token_type": "bearer", "expires_in": 86400})

        async def priority(request: Request) -> JSONResponse:
            body = await request.json()
            with self.lock:
                self.priorities.append((request.path_params["conv"], body["priority"]))
            return JSONResponse({"id": request.path_params["conv"]})

        return Starlette(
            routes=[
                Route("/oauth/token", token, methods=["POST"]),
                Route("/api/v2/routing/conversations/{conv}", priority, methods=["PATCH"]),
            ]
        )


@pytest.fixture
def genesys() -> Iterator[tuple[FakeGenesys, ThreadedServer]]:
    fake = FakeGenesys()
    with serve_in_thread(fake.app()) as server:
        yield fake, server


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path, redis)


Sweepers = Callable[[Store], SlaSweeper]


def sweeping(
    server: ThreadedServer, fn: Callable[[Store, Sweepers], Awaitable[None]]
) -> Callable[[Store, Clock], Awaitable[None]]:
    """A store test body given a maker of sweepers that escalate through the fake."""

    async def body(store: Store, _: Clock) -> None:
        async with new_session(timeout=10) as http:
            rest = GenesysRest(http, server.url, TokenProvider(http, server.url, "id", "secret"))

            def sweeper(on: Store) -> SlaSweeper:
                return SlaSweeper(
                    on, rest, RelayMetrics(), escalate_after=ESCALATE_AFTER, priority=750
                )

            await fn(store, sweeper)

    return body


class Reads:
    """Which customers' records the sweep read or wrote, and whether it listed them all."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: set[str] = set()
        self.listed = 0
        get, cas, listing = store.get_record, store.compare_and_put_record, store.list_records

        async def get_record(namespace: str, key: str) -> bytes | None:
            self.keys.add(key)
            return await get(namespace, key)

        async def compare_and_put_record(namespace: str, key: str, *a: Any, **k: Any) -> bool:
            self.keys.add(key)
            return await cas(namespace, key, *a, **k)

        async def list_records(namespace: str) -> list[tuple[str, bytes]]:
            self.listed += 1
            return await listing(namespace)

        monkeypatch.setattr(store, "get_record", get_record)
        monkeypatch.setattr(store, "compare_and_put_record", compare_and_put_record)
        monkeypatch.setattr(store, "list_records", list_records)


def test_the_sweep_reads_only_the_due_customer_among_a_thousand_that_are_not(
    backend: Backend,
    genesys: tuple[FakeGenesys, ThreadedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, server = genesys

    async def run(store: Store, sweeper: Sweepers) -> None:
        now_ms = int(time.time() * 1000)
        for i in range(1000):  # waiting two hours, or answered: none of them due
            await customer_waiting(store, f"c{i}", f"conv-c{i}", now_ms - 2 * HOUR_MS)
            if i % 2:
                await customer_answered(store, f"c{i}")
        await customer_waiting(store, "due", "conv-due", now_ms - 21 * HOUR_MS)
        reads = Reads(store, monkeypatch)
        assert await sweeper(store).sweep() == 1
        assert reads.keys == {"due"}
        assert reads.listed == 0
        reads.keys.clear()
        assert await sweeper(store).sweep() == 0  # escalated: out of the due index
        assert reads.keys == set()
        assert fake.priorities == [("conv-due", 750)]

    backend.run(sweeping(server, run))


def test_replicas_sweeping_at_once_escalate_each_customer_once(
    backend: Backend, genesys: tuple[FakeGenesys, ThreadedServer]
) -> None:
    fake, server = genesys

    async def body(store: Store, clock: Clock) -> None:
        other = backend.store(clock)  # a second replica on the same store
        await other.open()
        try:

            async def run(store: Store, sweeper: Sweepers) -> None:
                now_ms = int(time.time() * 1000)
                for i in range(20):
                    await customer_waiting(store, f"w{i}", f"conv-w{i}", now_ms - 21 * HOUR_MS)
                done = await asyncio.gather(
                    *(sweeper(s).sweep() for s in (store, other, store, other))
                )
                assert sum(done) == 20

            await sweeping(server, run)(store, clock)
        finally:
            await other.close()
        assert sorted(fake.priorities) == sorted((f"conv-w{i}", 750) for i in range(20))

    backend.run(body)


def test_an_answer_takes_the_customer_out_of_the_sweep(
    backend: Backend, genesys: tuple[FakeGenesys, ThreadedServer]
) -> None:
    fake, server = genesys

    async def run(store: Store, sweeper: Sweepers) -> None:
        now_ms = int(time.time() * 1000)
        await customer_waiting(store, "a", "conv-a", now_ms - 21 * HOUR_MS)
        await customer_answered(store, "a")
        assert await sweeper(store).sweep() == 0
        # Writing again starts a new waiting period: due only after the threshold.
        await customer_waiting(store, "a", "conv-a", now_ms - HOUR_MS)
        assert await sweeper(store).sweep() == 0
        assert fake.priorities == []

    backend.run(sweeping(server, run))


def test_sla_state_and_comment_origins_are_forgotten_after_their_time_to_live(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        now_ms = int(time.time() * 1000)
        await customer_waiting(store, "c", "conv-c", now_ms)
        origin = CommentOrigin("comment-1", now_ms)
        await records.put(store, COMMENT_ORIGIN, "c", origin)
        assert await records.get(store, COMMENT_ORIGIN, "c") == origin
        if isinstance(store, RedisStore):
            # Redis expires keys by its own clock: what redis-cli's PTTL shows.
            redis = Redis.from_url(backend.redis_url())
            try:
                for key, ttl in (
                    (f"{{{backend.prefix}}}:rec:conversation:c", CONVERSATION_TTL_SECONDS),
                    (f"{{{backend.prefix}}}:rec:comment_origin:c", COMMENT_ORIGIN_TTL_SECONDS),
                ):
                    left = await redis.pttl(key)
                    assert ttl * 1000 - 60_000 < left <= ttl * 1000
            finally:
                await redis.aclose()
            return
        clock.now += COMMENT_ORIGIN_TTL_SECONDS - 60
        assert await records.get(store, CONVERSATIONS, "c") is not None
        assert await records.get(store, COMMENT_ORIGIN, "c") == origin
        clock.now += 120
        assert await records.get(store, CONVERSATIONS, "c") is None
        assert await records.get(store, COMMENT_ORIGIN, "c") is None
        assert await store.prune_records() == 2

    backend.run(body)


def test_a_waiting_customers_later_messages_keep_the_start_of_their_wait(
    backend: Backend,
) -> None:
    async def body(store: Store, clock: Clock) -> None:
        now_ms = int(time.time() * 1000)
        await customer_waiting(store, "w", "conv-1", now_ms - HOUR_MS)
        first = await records.get(store, CONVERSATIONS, "w")
        # Later messages, with or without a conversation id: the wait began with the first.
        await customer_waiting(store, "w", "conv-1", now_ms)
        await customer_waiting(store, "w", None, now_ms)
        assert await records.get(store, CONVERSATIONS, "w") == first
        # One delivered out of order (older than the first) moves the start back ...
        await customer_waiting(store, "w", None, now_ms - 2 * HOUR_MS)
        state = await records.get(store, CONVERSATIONS, "w")
        assert state is not None
        assert (state.conversation_id, state.waiting_since_ms) == ("conv-1", now_ms - 2 * HOUR_MS)
        # ... and a new conversation is recorded, the wait still counted from its start.
        await customer_waiting(store, "w", "conv-2", now_ms)
        state = await records.get(store, CONVERSATIONS, "w")
        assert state is not None
        assert (state.conversation_id, state.waiting_since_ms) == ("conv-2", now_ms - 2 * HOUR_MS)

    backend.run(body)


def test_one_relay_remembers_who_waits_and_still_sees_every_answer(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SLA clock of a relay that alone moves it: a waiting customer's later messages
    cost no store read, and an answer or a new conversation is never hidden by that."""

    async def body(store: Store, _: Clock) -> None:
        now_ms = int(time.time() * 1000)
        reads = Reads(store, monkeypatch)
        sla = SlaClock(store, remember=True)
        await sla.waiting("r", "conv-1", now_ms - HOUR_MS)
        reads.keys.clear()
        await sla.waiting("r", "conv-1", now_ms)
        await sla.waiting("r", None, now_ms)
        assert reads.keys == set()  # known to wait since the first: nothing read or written
        # An answer stops the clock; the next message starts it again, from that message.
        await sla.answered("r")
        await sla.waiting("r", "conv-1", now_ms + 1000)
        state = await records.get(store, CONVERSATIONS, "r")
        assert state is not None
        assert (state.conversation_id, state.waiting_since_ms) == ("conv-1", now_ms + 1000)
        # A new conversation is recorded, the wait still counted from its start.
        await sla.waiting("r", "conv-2", now_ms + 2000)
        state = await records.get(store, CONVERSATIONS, "r")
        assert state is not None
        assert (state.conversation_id, state.waiting_since_ms) == ("conv-2", now_ms + 1000)

    backend.run(body)
