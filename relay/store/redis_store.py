"""The Redis store: several relay replicas share one Redis.

Every queue operation is one Lua script (``redis_scripts``), so claims are atomic across
replicas: a customer's jobs are leased one at a time whichever replica asks, and a lease
that stops being renewed (the replica died) hands the job to the next claimer. Durability
of what was answered 200 is Redis's: run it with ``appendonly yes`` and
``appendfsync always`` for the same promise as SQLite's fsync (``everysec`` may lose the
last second if Redis itself crashes). The relay checks this at start and warns.

Keys share one hash tag (``{prefix}``), so the store also works on one Redis Cluster slot.

Round trips: the per-message operations (enqueue, claim, settle, record reads and writes)
asked for while a round trip is under way share the next one, as one ``MULTI … EXEC``
(like SQLite's group commit: no added wait when idle, one trip for many messages under
load). Each operation keeps its own atomicity (a script, or its commands in that block);
the block runs them in the order they were asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError

from .. import redis_url
from . import redis_scripts as lua
from .base import (
    INTAKE,
    DeadLetter,
    EnqueueResult,
    IntakeBacklog,
    IntakeBatch,
    IntakeEntry,
    IntakeMoved,
    Job,
    NewJob,
    StoreUnavailable,
)
from .resp import Address, Command, ReplyError, RespConnection, WireError

log = logging.getLogger(__name__)

# A broken connection is replaced and its block sent once more (a restarted Redis), after:
RECONNECT_PAUSE_SECONDS = 0.05
# Operations per shared round trip: bounds one MULTI block's time inside Redis.
BATCH_LIMIT = 256


@dataclass(frozen=True, slots=True)
class _Op:
    commands: tuple[Command, ...]
    done: asyncio.Future[list[Any]]


def redacted(url: str) -> str:
    """``redis://user:pw@host:6379/0`` → ``redis://host:6379/0``: for logs and errors."""
    return redis_url.redacted(url)


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "igbridge",
        clock: Callable[[], float] = time.time,
        timeout: float = 2.0,
    ) -> None:
        self._url = url
        self._where = redacted(url)
        self._tag = "{" + prefix.replace("{", "").replace("}", "") + "}"
        self._clock = clock
        self._timeout = timeout
        self._redis: Redis | None = None
        self._sentinel: Sentinel | None = None
        self._ops: list[_Op] = []
        self._sender: asyncio.Task[None] | None = None
        # The shared round trips' own connection (``resp``); redis-py serves the rest.
        self._wire: RespConnection | None = None
        self._address: Address | None = None  # read from the URL at the first connect
        self.round_trips = 0  # shared round trips sent: fewer than operations under load

    def _base(self, queue: str) -> str:
        return f"{self._tag}:q:{queue}:"

    @property
    def _intake(self) -> str:
        return f"{self._tag}:intake:"

    @property
    def _windows(self) -> str:
        return f"{self._tag}:windows"

    def _record(self, namespace: str, key: str) -> str:
        return f"{self._tag}:rec:{namespace}:{key}"

    def _record_index(self, namespace: str) -> str:
        return f"{self._tag}:recidx:{namespace}"

    def _due_index(self, namespace: str) -> str:
        return f"{self._tag}:recdue:{namespace}"

    @property
    def _record_namespaces(self) -> str:
        return f"{self._tag}:recns"

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # redis-py's messages name host and port, never the password; keep them short.
        return StoreUnavailable(f"redis store {self._where}: {type(exc).__name__}: {exc}"[:300])

    @property
    def _r(self) -> Redis:
        if self._redis is None:
            raise StoreUnavailable(f"redis store {self._where}: not open")
        return self._redis

    async def open(self) -> None:
        # A short timeout and one quick retry: a webhook must get its 503 in seconds,
        # and a connection broken by a Redis restart is replaced on the retry.
        options: dict[str, Any] = {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            "health_check_interval": 15,
        }
        if self._url.startswith(redis_url.SENTINEL_SCHEME):
            self._redis = self._primary(redis_url.parse_sentinel(self._url), options)
        else:
            self._redis = Redis.from_url(self._url, **options)
        self._enqueue = self._redis.register_script(lua.ENQUEUE)
        self._append_intake = self._redis.register_script(lua.APPEND_INTAKE)
        self._consume_intake = self._redis.register_script(lua.CONSUME_INTAKE)
        self._claim = self._redis.register_script(lua.CLAIM)
        self._renew = self._redis.register_script(lua.RENEW)
        self._settle = self._redis.register_script(lua.SETTLE)
        self._cas = self._redis.register_script(lua.COMPARE_AND_PUT)
        self._scripts = [
            self._enqueue,
            self._append_intake,
            self._consume_intake,
            self._claim,
            self._renew,
            self._settle,
            self._cas,
        ]
        self._prune_dead = self._redis.register_script(lua.PRUNE_DEAD)
        self._replay_dead = self._redis.register_script(lua.REPLAY_DEAD)
        self._purge_dead = self._redis.register_script(lua.PURGE_DEAD)
        self._prune_index = self._redis.register_script(lua.PRUNE_RECORD_INDEXES)
        self._upgrade_intake = self._redis.register_script(lua.UPGRADE_INTAKE)
        # Redis being down at start is like Redis going down later: the relay runs, is
        # not ready and answers webhooks 503 until Redis is back; no crash loop.
        try:
            await self.ping()
        except StoreUnavailable as exc:
            log.warning("redis store unreachable at start; not ready until it is back: %s", exc)
            return
        await self._check_persistence()
        try:
            moved = await self._call(
                self._upgrade_intake(
                    keys=[], args=[self._base(INTAKE), self._intake], client=self._r
                )
            )
        except StoreUnavailable as exc:
            log.warning("intake jobs of an older version not moved into the log: %s", exc)
            return
        if moved:
            log.info("intake jobs moved into the intake log", extra={"count": int(moved)})

    def _primary(self, target: redis_url.SentinelTarget, options: dict[str, Any]) -> Redis:
        """A client of the primary the sentinels name: each new connection asks them, so
        after a failover (the old connections fail, the retry reconnects) it is the new
        primary's, and one to a primary demoted to replica is dropped rather than read."""
        asked: dict[str, Any] = {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
        }
        if target.sentinel_password is not None:
            asked["password"] = target.sentinel_password
        self._sentinel = Sentinel(target.sentinels, sentinel_kwargs=asked)
        primary: Redis = self._sentinel.master_for(
            target.service,
            redis_class=Redis,
            db=target.db,
            username=target.username,
            password=target.password,
            **options,
        )
        return primary

    async def _check_persistence(self) -> None:
        try:
            config = await self._r.config_get("append*")
        except RedisError:
            return  # CONFIG is often disabled on managed Redis: nothing to check then
        values = {_text(k): _text(v) for k, v in dict(config).items()}
        appendonly = values.get("appendonly", "")
        fsync = values.get("appendfsync", "")
        if appendonly != "yes" or fsync != "always":
            log.warning(
                "redis may lose acknowledged messages if it crashes: run it with"
                " appendonly yes and appendfsync always",
                extra={"appendonly": appendonly, "appendfsync": fsync},
            )

    async def close(self) -> None:
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        self._drop_wire()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
            self._sentinel = None

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except RedisError as exc:
            raise self._unavailable(exc) from None

    async def ping(self) -> None:
        # Over the connection the queue's round trips use: ready means they can be made.
        await self._shared(("PING",))

    @staticmethod
    def _eval(script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Command:
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _shared(self, *commands: Command) -> list[Any]:
        """One operation's replies; operations asked for meanwhile share a round trip."""
        self._r  # noqa: B018 (raises StoreUnavailable when not open)
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._ops.append(_Op(commands, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_ops(), name="redis-round-trip")
        return await done

    async def _send_ops(self) -> None:
        while self._ops:
            batch, self._ops = self._ops[:BATCH_LIMIT], self._ops[BATCH_LIMIT:]
            try:
                replies = await self._round_trip(batch)
            except asyncio.CancelledError:
                for op in (*batch, *self._ops):  # shutting down: nobody is left to send them
                    op.done.cancel()
                self._ops = []
                raise
            except Exception as exc:  # every waiter hears of it; none is left hanging
                failure = exc if isinstance(exc, StoreUnavailable) else self._unavailable(exc)
                for op in batch:
                    if not op.done.done():
                        op.done.set_exception(failure)
                continue
            for op, reply in zip(batch, replies, strict=True):
                if op.done.done():  # its caller went away meanwhile
                    continue
                failed = next((r for r in reply if isinstance(r, Exception)), None)
                if failed is None:
                    op.done.set_result(reply)
                else:
                    op.done.set_exception(self._unavailable(failed))

    async def _round_trip(self, batch: Sequence[_Op]) -> list[list[Any]]:
        """Each operation's replies (an error reply as its exception), in one round trip;
        operations whose script Redis no longer knows (it restarted) go again once loaded."""
        replies = await self._send(batch)
        again = [
            i for i, reply in enumerate(replies) if any(isinstance(r, NoScriptError) for r in reply)
        ]
        if again:
            try:
                for script in self._scripts:
                    await self._r.script_load(script.script)
            except RedisError as exc:
                raise self._unavailable(exc) from None
            for i, reply in zip(again, await self._send([batch[i] for i in again]), strict=True):
                replies[i] = reply
        return replies

    async def _send(self, batch: Sequence[_Op]) -> list[list[Any]]:
        commands = [command for op in batch for command in op.commands]
        self.round_trips += 1
        flat = await self._exchange(commands)
        out: list[list[Any]] = []
        for op in batch:
            out.append(flat[: len(op.commands)])
            flat = flat[len(op.commands) :]
        return out

    async def _exchange(self, commands: Sequence[Command]) -> list[Any]:
        """The commands' replies (an error reply as its exception), in one round trip on
        the store's own connection; one command alone needs no MULTI block around it."""
        for attempt in range(2):
            try:
                wire = await self._connection()
                if len(commands) == 1:
                    replies = await wire.exchange(commands)
                else:
                    replies = await wire.transaction(commands)
            except WireError as exc:
                self._drop_wire()
                if attempt:
                    raise self._unavailable(exc) from None
                await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            except (ReplyError, RedisError) as exc:  # the block refused whole; no primary
                raise self._unavailable(exc) from None
            return [self._reply(reply) for reply in replies]
        raise AssertionError("unreachable")

    def _reply(self, reply: Any) -> Any:
        if not isinstance(reply, ReplyError):
            return reply
        text = str(reply)
        if text.startswith("READONLY"):
            # A primary demoted by a failover: the next round trip asks the sentinels anew.
            self._drop_wire()
        if text.startswith("NOSCRIPT"):
            return NoScriptError(text)
        return ResponseError(text)

    async def _connection(self) -> RespConnection:
        if self._wire is None or self._wire.closed:
            address = await self._where_to_connect()
            self._wire = await RespConnection.open(address, within=self._timeout)
        return self._wire

    async def _where_to_connect(self) -> Address:
        """Where to connect: the URL's server, or the primary the sentinels name now."""
        if self._sentinel is not None:
            target = redis_url.parse_sentinel(self._url)
            host, port = await self._sentinel.discover_master(target.service)
            return Address(host, int(port), target.username, target.password, target.db)
        if self._address is None:
            try:
                self._address = _address(self._url)
            except (RedisError, ValueError, TypeError) as exc:  # e.g. an unknown TLS option
                raise self._unavailable(exc) from None
        return self._address

    def _drop_wire(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    async def enqueue(
        self,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
        args = self._add_args(queue, jobs, customer_messages)
        ((accepted, duplicates),) = await self._shared(self._eval(self._enqueue, [], args))
        return EnqueueResult(int(accepted), int(duplicates))

    def _add_args(
        self, queue: str, jobs: Sequence[NewJob], customer_messages: Mapping[str, int] | None
    ) -> list[str | bytes | int | float]:
        windows = customer_messages or {}
        args: list[str | bytes | int | float] = [
            self._base(queue),
            self._windows,
            self._clock(),
            len(windows),
        ]
        for key, ms in windows.items():
            args += [key, ms]
        for job in jobs:
            args += [job.key, job.dedupe_key, job.order_ts, job.payload]
        return args

    async def append_intake(self, bodies: Sequence[bytes]) -> list[int]:
        args = [self._intake, self._clock(), *bodies]
        (ids,) = await self._shared(self._eval(self._append_intake, [], args))
        return [int(n) for n in ids]

    async def read_intake(self, limit: int) -> IntakeBatch:
        # Consumed entries leave the stream with the position's move: what it holds comes
        # after the position read in the same block.
        position, rows = await self._shared(
            ("GET", self._intake + "pos"),
            ("XRANGE", self._intake + "log", "-", "+", "COUNT", limit),
        )
        entries = [_entry(raw_id, fields) for raw_id, fields in rows]
        return IntakeBatch(0 if position is None else int(position), entries)

    async def consume_intake(
        self,
        position: int,
        through: int,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
        unreadable: Sequence[tuple[IntakeEntry, str]] = (),
    ) -> EnqueueResult:
        if through < position:
            raise ValueError("the intake position only moves forward")
        now = self._clock()
        args: list[str | bytes | int | float] = [
            self._intake,
            position,
            through,
            self._base(INTAKE),
            now,
            len(unreadable),
        ]
        for entry, reason in unreadable:
            args += [str(entry.id), f"unreadable webhook: {reason}"[:1000], entry.body]
        args += self._add_args(queue, jobs, customer_messages)
        ((accepted, duplicates),) = await self._shared(self._eval(self._consume_intake, [], args))
        if int(accepted) < 0:
            raise IntakeMoved(f"intake position moved on from {position}")
        return EnqueueResult(int(accepted), int(duplicates))

    async def intake_backlog(self) -> IntakeBacklog:
        count, first = await self._shared(
            ("XLEN", self._intake + "log"),
            ("XRANGE", self._intake + "log", "-", "+", "COUNT", 1),
        )
        if not first:
            return IntakeBacklog(int(count), None)
        oldest = _entry(*first[0]).received_at
        return IntakeBacklog(int(count), max(0.0, self._clock() - oldest))

    async def claim(self, queue: str, limit: int, lease_seconds: float) -> list[Job]:
        now = self._clock()
        (rows,) = await self._shared(
            self._eval(self._claim, [], [self._base(queue), now, limit, now + lease_seconds])
        )
        return [
            Job(
                id=int(r[0]),
                queue=queue,
                key=_text(r[1]),
                dedupe_key=_text(r[2]),
                order_ts=int(_text(r[3])),
                payload=bytes(r[4]),
                attempts=int(r[5]),
                enqueued_at=float(r[6]),
                lease=_text(r[7]),
            )
            for r in rows
        ]

    async def renew(self, queue: str, jobs: Sequence[Job], lease_seconds: float) -> list[int]:
        if not jobs:
            return []
        now = self._clock()
        args: list[str | float] = [self._base(queue), now, now + lease_seconds]
        for job in jobs:
            args += [job.key, str(job.id), job.lease]
        (lost,) = await self._shared(self._eval(self._renew, [], args))
        return [int(i) for i in lost]

    async def _settle_job(self, job: Job, mode: str, *extra: str | float) -> None:
        args = [self._base(job.queue), str(job.id), job.key, job.lease, mode, *extra]
        await self._shared(self._eval(self._settle, [], args))

    async def complete(self, job: Job) -> None:
        await self._settle_job(job, "done")

    async def retry(self, job: Job, delay_seconds: float, error: str) -> None:
        await self._settle_job(job, "retry", self._clock() + max(0.0, delay_seconds), error[:1000])

    async def dead_letter(self, job: Job, reason: str) -> None:
        await self._settle_job(job, "dead", reason[:1000], self._clock())

    async def depth(self, queue: str) -> int:
        return int(await self._call(self._r.zcard(self._base(queue) + "all")))

    async def oldest_age(self, queue: str) -> float | None:
        rows = await self._call(self._r.zrange(self._base(queue) + "all", 0, 0, withscores=True))
        if not rows:
            return None
        return max(0.0, self._clock() - float(rows[0][1]))

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        base = self._base(queue)
        ids = await self._call(self._r.zrevrange(base + "deadidx", 0, limit - 1))
        if not ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for n in ids:
            pipe.hgetall(base + "dead:" + _text(n))
        rows = await self._call(pipe.execute())
        return [_dead(queue, int(n), h) for n, h in zip(ids, rows, strict=True) if h]

    async def find_dead_letter(self, queue: str, dead_id: int) -> DeadLetter | None:
        fields = await self._call(self._r.hgetall(f"{self._base(queue)}dead:{dead_id}"))
        return _dead(queue, dead_id, fields) if fields else None

    async def replay_dead_letter(self, queue: str, dead_id: int) -> bool:
        if queue == INTAKE:  # a raw webhook, not a job of a queue
            return False
        args: list[str | int | float] = [self._base(queue), dead_id, self._clock()]
        return bool(await self._call(self._replay_dead(keys=[], args=args, client=self._r)))

    async def purge_dead_letters(
        self,
        queue: str,
        ids: Sequence[int] | None = None,
        older_than_seconds: float | None = None,
    ) -> int:
        base = self._base(queue)
        cutoff = "inf" if older_than_seconds is None else repr(self._clock() - older_than_seconds)
        if ids is None:
            removed = self._prune_dead(keys=[], args=[base, cutoff], client=self._r)
            return int(await self._call(removed))
        removed = self._purge_dead(keys=[], args=[base, cutoff, *ids], client=self._r)
        return int(await self._call(removed))

    async def dead_letter_count(self, queue: str) -> int:
        return int(await self._call(self._r.zcard(self._base(queue) + "deadidx")))

    async def prune_dead_letters(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        removed = await self._call(
            self._prune_dead(keys=[], args=[self._base(queue), cutoff], client=self._r)
        )
        return int(removed)

    async def prune_dedupe(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        removed = await self._call(
            self._r.zremrangebyscore(self._base(queue) + "dedupe", "-inf", f"({cutoff}")
        )
        return int(removed)

    async def last_customer_message(self, key: str) -> int | None:
        (score,) = await self._shared(("ZSCORE", self._windows, key))
        return None if score is None else int(float(score))

    async def prune_windows(self, older_than_seconds: float) -> int:
        cutoff_ms = int((self._clock() - older_than_seconds) * 1000)
        removed = await self._call(self._r.zremrangebyscore(self._windows, "-inf", f"({cutoff_ms}"))
        return int(removed)

    async def window_customers(self, from_ms: int, to_ms: int) -> list[tuple[str, int]]:
        rows = await self._call(
            self._r.zrangebyscore(self._windows, from_ms, to_ms, withscores=True)
        )
        return [(_text(k), int(score)) for k, score in rows]

    async def put_record(
        self,
        namespace: str,
        key: str,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> None:
        due: Command
        if due_at is None:
            due = ("ZREM", self._due_index(namespace), key)
        else:
            due = ("ZADD", self._due_index(namespace), repr(due_at), key)
        put: Command
        if ttl_seconds is None:
            put = ("SET", self._record(namespace, key), value)
            score = "inf"
        else:
            ms = max(1, int(ttl_seconds * 1000))
            put = ("SET", self._record(namespace, key), value, "PX", ms)
            score = repr(self._clock() + ttl_seconds)
        await self._shared(
            due,
            put,
            ("ZADD", self._record_index(namespace), score, key),
            ("SADD", self._record_namespaces, namespace),
        )

    async def compare_and_put_record(
        self,
        namespace: str,
        key: str,
        expected: bytes | None,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> bool:
        if ttl_seconds is None:
            ttl_ms, score = "0", "inf"
        else:
            ttl_ms, score = str(max(1, int(ttl_seconds * 1000))), str(self._clock() + ttl_seconds)
        keys = [
            self._record(namespace, key),
            self._record_index(namespace),
            self._due_index(namespace),
            self._record_namespaces,
        ]
        args = [
            "0" if expected is None else "1",
            expected or b"",
            value,
            key,
            ttl_ms,
            score,
            "" if due_at is None else repr(due_at),
            namespace,
        ]
        (done,) = await self._shared(self._eval(self._cas, keys, args))
        return bool(done)

    async def get_record(self, namespace: str, key: str) -> bytes | None:
        (value,) = await self._shared(("GET", self._record(namespace, key)))
        return None if value is None else bytes(value)

    async def list_records(self, namespace: str) -> list[tuple[str, bytes]]:
        index = self._record_index(namespace)
        live = await self._call(self._r.zrangebyscore(index, self._clock(), "+inf"))
        keys = [_text(k) for k in live]
        out: list[tuple[str, bytes]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = await self._call(self._r.mget([self._record(namespace, k) for k in chunk]))
            out += [(k, bytes(v)) for k, v in zip(chunk, values, strict=True) if v is not None]
        return sorted(out)

    async def due_records(
        self, namespace: str, until: float, limit: int
    ) -> list[tuple[str, bytes]]:
        due = await self._call(
            self._r.zrangebyscore(self._due_index(namespace), "-inf", until, start=0, num=limit)
        )
        keys = [_text(k) for k in due]
        if not keys:
            return []
        values = await self._call(self._r.mget([self._record(namespace, k) for k in keys]))
        # An entry whose record Redis already expired waits for prune_records to go.
        return [(k, bytes(v)) for k, v in zip(keys, values, strict=True) if v is not None]

    async def prune_records(self) -> int:
        """Drop index entries of expired records (Redis expired the records themselves)."""
        now = self._clock()
        removed = 0
        for ns in await self._call(self._r.smembers(self._record_namespaces)):
            name = _text(ns)
            keys = [self._record_index(name), self._due_index(name)]
            pruned = self._prune_index(keys=keys, args=[now], client=self._r)
            removed += int(await self._call(pruned))
        return removed

    async def blank_dead_letter_payloads(self, queue: str, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        script = self._r.register_script(lua.BLANK_DEAD_PAYLOADS)
        return int(await self._call(script(keys=[], args=[self._base(queue), cutoff])))

    async def forget_customer(self, igsid: str) -> dict[str, int]:
        """Walks this channel's keys once (SCAN, in chunks): erasure is rare and must find
        the customer wherever they are mentioned, not only where they are the key."""
        if not igsid:
            raise ValueError("forget_customer needs a customer id")
        r = self._r
        mentioned = igsid.encode()
        counts = dict.fromkeys(("jobs", "dead_letters", "windows", "records", "dedupe"), 0)
        pattern = _glob_escaped(self._tag) + ":*"
        keys: list[str] = []
        async for raw in r.scan_iter(match=pattern, count=FORGET_CHUNK):
            keys.append(_text(raw))
        bases = sorted(
            {
                k[: k.index(":", len(self._tag) + 3) + 1]
                for k in keys
                if k.startswith(f"{self._tag}:q:") and k.count(":") >= 3
            }
        )
        forget_jobs = r.register_script(lua.FORGET_JOBS)
        like = "*" + _glob_escaped(igsid) + "*"
        for base in bases:
            counts["jobs"] += int(await self._call(forget_jobs(keys=[], args=[base, igsid])))
            counts["dead_letters"] += await self._forget_dead(base, igsid, mentioned)
            async for member, _ in r.zscan_iter(base + "dedupe", match=like, count=FORGET_CHUNK):
                counts["dedupe"] += int(await self._call(r.zrem(base + "dedupe", member)))
        counts["windows"] = int(await self._call(r.zrem(self._windows, igsid)))
        record_prefix = f"{self._tag}:rec:"
        record_keys = [k for k in keys if k.startswith(record_prefix)]
        for start in range(0, len(record_keys), FORGET_CHUNK):
            chunk = record_keys[start : start + FORGET_CHUNK]
            values = await self._call(r.mget(chunk))
            for key, value in zip(chunk, values, strict=True):
                namespace, _, record_key = key[len(record_prefix) :].partition(":")
                if igsid in record_key or (value is not None and mentioned in bytes(value)):
                    counts["records"] += int(await self._call(r.delete(key)))
                    await self._call(r.zrem(self._record_index(namespace), record_key))
                    await self._call(r.zrem(self._due_index(namespace), record_key))
        for key in keys:  # index entries of records already expired
            if key.startswith((f"{self._tag}:recidx:", f"{self._tag}:recdue:")):
                async for member, _ in r.zscan_iter(key, match=like, count=FORGET_CHUNK):
                    await self._call(r.zrem(key, member))
        counts["intake"] = await self._forget_intake(mentioned)
        return counts

    async def _forget_dead(self, base: str, igsid: str, mentioned: bytes) -> int:
        r = self._r
        ids = [_text(n) for n in await self._call(r.zrange(base + "deadidx", 0, -1))]
        removed = 0
        for start in range(0, len(ids), FORGET_CHUNK):
            chunk = ids[start : start + FORGET_CHUNK]
            pipe = r.pipeline(transaction=False)
            for n in chunk:
                pipe.hgetall(base + "dead:" + n)
            rows = await self._call(pipe.execute())
            for n, h in zip(chunk, rows, strict=True):
                fields = (
                    h.get(b"key", b""),
                    h.get(b"dk", b""),
                    h.get(b"payload", b""),
                    h.get(b"reason", b""),
                )
                if h.get(b"key", b"") == mentioned or any(mentioned in f for f in fields):
                    await self._call(r.delete(base + "dead:" + n))
                    await self._call(r.zrem(base + "deadidx", n))
                    removed += 1
        return removed

    async def _forget_intake(self, mentioned: bytes) -> int:
        """Intake entries mentioning the customer leave the stream (its ids come from a
        counter, so a gap is harmless), whether consumed or not."""
        r, log_key = self._r, self._intake + "log"
        removed, after = 0, "-"
        while True:
            rows = await self._call(r.xrange(log_key, after, "+", count=FORGET_CHUNK))
            if not rows:
                return removed
            for raw_id, fields in rows:
                if mentioned in bytes(fields.get(b"b", b"")):
                    removed += int(await self._call(r.xdel(log_key, raw_id)))
            after = "(" + _text(rows[-1][0])
            if len(rows) < FORGET_CHUNK:
                return removed


def _address(url: str) -> Address:
    """Where a ``redis://`` or ``rediss://`` URL points, read as redis-py reads it (its
    TLS settings too, so both connections verify the server alike)."""
    options: dict[str, Any] = dict(parse_url(url))
    tls = None
    if options.pop("connection_class", None) is SSLConnection:
        tls = SSLConnection(**options).ssl_context.get()
    return Address(
        host=str(options.get("host", "localhost")),
        port=int(options.get("port", 6379)),
        username=options.get("username"),
        password=options.get("password"),
        db=int(options.get("db", 0)),
        tls=tls,
    )


def _entry(raw_id: object, fields: Any) -> IntakeEntry:
    """A stream entry ``<n>-0`` with its fields (b: body, t: time received), as redis-py
    parses XRANGE (a dict) or as a flat list."""
    values = (
        fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))
    )
    return IntakeEntry(
        id=int(_text(raw_id).split("-", 1)[0]),
        body=bytes(values[b"b"]),
        received_at=float(values[b"t"]),
    )


def _dead(queue: str, dead_id: int, h: Any) -> DeadLetter:
    return DeadLetter(
        id=dead_id,
        queue=queue,
        key=_text(h[b"key"]),
        dedupe_key=_text(h[b"dk"]),
        payload=bytes(h[b"payload"]),
        reason=_text(h[b"reason"]),
        attempts=int(h[b"attempts"]),
        failed_at=float(h[b"at"]),
        order_ts=int(_text(h.get(b"ots", b"0"))),
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escaped(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# Keys SCAN and XRANGE ask for per call while erasing (bounds each reply).
FORGET_CHUNK = 500
