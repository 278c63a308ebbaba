"""What only the Redis store does: replicas sharing one Redis, take-over of a dead
replica's leases, surviving a Redis crash, and failing fast (without the password) when
Redis is away."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import uvloop
from redis import Redis

from igbridge.relay.store import NewJob, RedisStore, StoreUnavailable
from igbridge.relay.store.redis_store import redacted
from igbridge.relay.store.resp import Address, ReplyError, RespConnection
from tests.harness.redis_server import RedisServer
from tests.test_store_contract import Clock, job

Q = "outbound"


def test_replicas_share_the_queue_and_a_dead_replicas_lease_moves_on(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        clock = Clock()
        a = RedisStore(redis_server.url, prefix="takeover", clock=clock)
        b = RedisStore(redis_server.url, prefix="takeover", clock=clock)
        other_channel = RedisStore(redis_server.url, prefix="elsewhere", clock=clock)
        for s in (a, b, other_channel):
            await s.open()
        try:
            await a.enqueue(Q, [job("c1", "m1", 1), job("c1", "m2", 2), job("c2", "n1", 1)])
            assert await other_channel.depth(Q) == 0  # prefixes keep channels apart
            assert (await b.enqueue(Q, [job("c1", "m1", 1)])).duplicates == 1
            (first,) = await a.claim(Q, 1, 5)
            # b sees the customer busy: it gets the other customer, never c1's next job.
            got = await b.claim(Q, 10, 5)
            assert [j.key for j in got] == [k for k in ("c1", "c2") if k != first.key]
            await b.complete(got[0])
            # a dies without a word: no renewal. Once its lease runs out, b takes over.
            clock.now += 4
            assert await b.claim(Q, 10, 5) == []
            clock.now += 2
            (taken,) = await b.claim(Q, 10, 5)
            assert taken.dedupe_key == first.dedupe_key
            # a wakes up late: its lease is gone, and its outcome no longer frees c1 early.
            assert await a.renew(Q, [first], 5) == [first.id]
            await b.complete(taken)
            rest = await b.claim(Q, 10, 5)
            assert [j.dedupe_key for j in rest] == (["m2"] if first.key == "c1" else [])
        finally:
            for s in (a, b, other_channel):
                await s.close()

    asyncio.run(main())


def test_acknowledged_jobs_survive_a_redis_crash_and_the_store_reconnects(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis").start()

    async def main() -> None:
        store = RedisStore(redis.url)
        await store.open()
        try:
            await store.enqueue(
                "inbound",
                [NewJob("c", f"m{i}", i, "🙂".encode()) for i in range(50)],
                {"c": 49},
            )
            redis.kill()
            with pytest.raises(StoreUnavailable):
                await store.enqueue("inbound", [NewJob("c", "late", 99, b"{}")])
            with pytest.raises(StoreUnavailable):
                await store.ping()
            redis.start()
            await store.ping()  # the same store object, reconnected
            assert await store.depth("inbound") == 50
            assert await store.last_customer_message("c") == 49
            jobs = await store.claim("inbound", 10, 30)
            assert [(j.dedupe_key, j.payload) for j in jobs] == [("m0", "🙂".encode())]
            assert (await store.enqueue("inbound", [NewJob("c", "late", 99, b"{}")])).accepted
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        redis.stop()


def test_unreachable_redis_is_store_unavailable_without_the_password(tmp_path: Path) -> None:
    dead = RedisServer(tmp_path / "never-started")  # a free port nobody listens on
    url = f"redis://:s3cret-pw@127.0.0.1:{dead.port}/0"
    assert redacted(url) == f"redis://127.0.0.1:{dead.port}/0"

    async def main() -> None:
        store = RedisStore(url, timeout=0.5)
        await store.open()  # starts anyway: not ready until Redis is there
        try:
            with pytest.raises(StoreUnavailable) as caught:
                await store.enqueue("inbound", [NewJob("c", "m", 1, b"{}")])
            assert "s3cret-pw" not in str(caught.value)
            assert f"127.0.0.1:{dead.port}" in str(caught.value)
        finally:
            await store.close()

    asyncio.run(main())


def test_redis_without_fsync_on_every_write_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis").start()

    async def main() -> None:
        plain = RedisStore(redis.url)
        await plain.open()
        await plain.close()
        assert not [r for r in caplog.records if "appendfsync" in r.getMessage()]
        admin = RedisStore(redis.url)
        await admin.open()
        assert admin._redis is not None
        await admin._redis.config_set("appendfsync", "everysec")
        await admin.close()
        warned = RedisStore(redis.url)
        await warned.open()
        await warned.close()

    try:
        with caplog.at_level(logging.WARNING):
            asyncio.run(main())
    finally:
        redis.stop()
    assert any("appendfsync always" in r.getMessage() for r in caplog.records)


def test_concurrent_operations_share_round_trips_and_fail_alone(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url, prefix="shared-trips", clock=Clock())
        await store.open()
        try:
            await store.enqueue(Q, [job(f"c{i}", f"m{i}", i) for i in range(40)])
            before = store.round_trips
            claimed = await store.claim(Q, 40, 30)
            # 40 deliveries finishing at once: their settlements and record writes, and a
            # read of a key holding the wrong type, asked for together.
            assert store._redis is not None
            await store._redis.set("{shared-trips}:rec:broken:k", b"x")
            await store._redis.lpush("{shared-trips}:rec:broken:list", b"x")
            results = await asyncio.gather(
                *(store.complete(j) for j in claimed),
                *(store.put_record("progress", j.dedupe_key, b"done") for j in claimed),
                store.get_record("broken", "list"),
                store.get_record("broken", "k"),
                return_exceptions=True,
            )
            assert store.round_trips - before <= 3  # the claim, then at most two shared
            assert all(r is None for r in results[:80])
            assert isinstance(results[80], StoreUnavailable)
            assert "WRONGTYPE" in str(results[80])
            assert results[81] == b"x"  # its neighbour in the same round trip was fine
            assert await store.depth(Q) == 0
            assert await store.get_record("progress", "m7") == b"done"
        finally:
            await store.close()

    asyncio.run(main())


def test_scripts_forgotten_by_redis_are_loaded_again(redis_server: RedisServer) -> None:
    async def main() -> None:
        store = RedisStore(redis_server.url, prefix="flushed", clock=Clock())
        await store.open()
        try:
            await store.enqueue(Q, [job("c", "m1", 1)])
            assert store._redis is not None
            await store._redis.script_flush()  # as after a Redis restart without its cache
            (claimed,) = await store.claim(Q, 10, 30)
            await store.complete(claimed)
            assert await store.depth(Q) == 0
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_password_protected_redis_on_another_database_and_over_tls(
    tmp_path: Path, tls: bool
) -> None:
    """The URL's password, database and TLS hold for every round trip: jobs land in the
    URL's database, a wrong password or an untrusted certificate is StoreUnavailable
    that never shows the password."""
    secret = "s3cr:et/pw"
    redis = RedisServer(tmp_path / "redis", password=secret, tls=tls).start()

    async def main() -> None:
        store = RedisStore(redis.url_for(3), prefix="auth", clock=Clock())
        await store.open()
        try:
            await store.enqueue(Q, [job("c1", "m1", 1), job("c2", "n1", 1)])
            claimed = await store.claim(Q, 10, 30)
            # Asked for together: one MULTI block over the same connection.
            await asyncio.gather(
                *(store.complete(j) for j in claimed),
                store.put_record("progress", "m1", "✅ sent".encode()),
            )
            assert await store.depth(Q) == 0
            assert await store.get_record("progress", "m1") == "✅ sent".encode()
        finally:
            await store.close()
        refused = [redis.url_for(3, password="wrong")]
        if tls:  # the server's certificate from a CA this client was not told to trust
            refused.append(redis.url_for(3).split("?", 1)[0])
        for url in refused:
            stranger = RedisStore(url, prefix="auth", clock=Clock(), timeout=2.0)
            await stranger.open()  # starts anyway, not ready
            try:
                with pytest.raises(StoreUnavailable) as caught:
                    await stranger.enqueue(Q, [job("c3", "x1", 1)])
                assert secret not in str(caught.value)
                assert "wrong" not in str(caught.value)
            finally:
                await stranger.close()

    try:
        asyncio.run(main())
        with Redis.from_url(redis.url_for(3)) as db3, Redis.from_url(redis.url_for(0)) as db0:
            assert db3.exists("{auth}:rec:progress:m1") == 1
            assert db0.dbsize() == 0
    finally:
        redis.stop()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_reply_that_comes_too_late_never_answers_a_later_call(tmp_path: Path, loop: str) -> None:
    """A round trip cut short (Redis hung past the timeout, or its caller cancelled) leaves
    its replies unread: the connection is dropped, so they can never be taken for the
    answers of the next call."""
    redis = RedisServer(tmp_path / "redis").start()

    async def main() -> None:
        store = RedisStore(redis.url, prefix="late", clock=Clock(), timeout=0.5)
        await store.open()
        try:
            await store.put_record("progress", "a", b"A")
            await store.put_record("progress", "b", b"B")
            redis.pause()
            try:
                with pytest.raises(StoreUnavailable) as caught:
                    await store.get_record("progress", "a")
                assert "no reply" in str(caught.value)
                cancelled = asyncio.create_task(store.get_record("progress", "a"))
                await asyncio.sleep(0.2)
                cancelled.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await cancelled
            finally:
                redis.resume()
            assert await store.get_record("progress", "b") == b"B"
            assert await store.get_record("progress", "a") == b"A"
            assert await store.get_record("progress", "missing") is None
        finally:
            await store.close()

    try:
        uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())
    finally:
        redis.stop()


def test_a_command_that_cannot_be_sent_fails_alone_and_the_connection_goes_on(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        address = Address("127.0.0.1", redis_server.port)
        conn = await RespConnection.open(address, within=2.0)
        try:
            with pytest.raises(TypeError):
                await conn.exchange([("SET", "unsendable", None)])  # type: ignore[list-item]
            assert await conn.transaction([("SET", "k", "✅"), ("GET", "k")]) == [
                b"OK",
                "✅".encode(),
            ]
            (refused,) = await conn.exchange([("INCR", "k")])  # an error reply, in its place
            assert isinstance(refused, ReplyError)
            assert await conn.exchange([("PING",)]) == [b"PONG"]
        finally:
            conn.close()

    uvloop.run(main())


def test_a_tls_option_redis_py_refuses_is_store_unavailable_not_a_crash(
    redis_server: RedisServer,
) -> None:
    url = f"rediss://:s3cret-pw@127.0.0.1:{redis_server.port}/0?ssl_cert_reqs=sometimes"

    async def main() -> None:
        store = RedisStore(url, timeout=0.5)
        await store.open()  # starts, not ready, with the reason
        try:
            with pytest.raises(StoreUnavailable, match="sometimes") as caught:
                await store.ping()
            assert "s3cret-pw" not in str(caught.value)
        finally:
            await store.close()

    asyncio.run(main())
