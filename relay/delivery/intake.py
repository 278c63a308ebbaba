"""Raw signed webhooks → inbound jobs.

The ack appends a verified webhook's bytes as they came to the intake log and answers;
everything else happens here, off the ack path: decode, ``parse_webhook``, skip what is
not forwarded, and turn the events into per-customer ``inbound`` jobs with
``Store.consume_intake`` — the log's position moves past a batch in the same atomic step
that stores its events, so a crash between the two loses nothing and duplicates nothing
that dedupe would not drop.

A batch is split in the order the webhooks arrived, one batch at a time, so a
customer's events enter their queue in arrival order, as they did when the ack split
them itself. The position's compare-and-set keeps that order even when two splitters
meet (a replica taking over from a stalled one): the second to consume a batch is
refused and reads again from where the first left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .. import records
from ..meta.events import (
    FORWARDED_KINDS,
    REPLAY_HORIZON_MS,
    EventKind,
    InstagramEvent,
    JustStored,
    Skipped,
    StandbyMode,
    parse_webhook,
)
from ..metrics import RelayMetrics
from ..pipeline.window import CommentOrigin
from ..records import COMMENT_ORIGIN, INBOUND, INTAKE, OWN_MESSAGES, SPLITTER
from ..store.base import IntakeBatch, IntakeEntry, IntakeMoved, NewJob, Store, StoreUnavailable

log = logging.getLogger(__name__)

# What a customer does that opens (or keeps open) Meta's 24-hour reply window.
WINDOW_KINDS = frozenset(
    {EventKind.MESSAGE, EventKind.POSTBACK, EventKind.REACTION, EventKind.REFERRAL}
)
LEAD_KEY = "lead"
# The lead record outlives any outage it must survive; who leads is read from its value.
LEAD_RECORD_TTL_SECONDS = 86400.0
# Standby copies are routine while another app owns threads: no warning each.
QUIET_SKIPS = frozenset({"standby"})


@dataclass(frozen=True, slots=True)
class Routing:
    """Which entries are this channel's, from the relay's settings."""

    account_id: str | None
    entry_ids: tuple[str, ...] = ()
    standby: StandbyMode = "skip"
    # Events older than this by Meta's time are replays past the dedupe memory (0: off).
    replay_horizon_ms: int = REPLAY_HORIZON_MS


@dataclass(slots=True)
class Split:
    """What a batch of raw webhooks comes to (pure: see ``split``)."""

    jobs: list[NewJob] = field(default_factory=list)
    latest: dict[str, int] = field(default_factory=dict)  # customer → latest window ms
    events: list[InstagramEvent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unreadable: list[tuple[IntakeEntry, str]] = field(default_factory=list)  # entry, reason
    readable: list[IntakeEntry] = field(default_factory=list)


def split(entries: Iterable[IntakeEntry], routing: Routing) -> Split:
    """Parse each raw webhook and collect its forwarded events as inbound jobs, in order.

    A webhook that cannot be decoded any more (the ack checked it, so only a changed
    parser or a damaged store gets here) is set aside with its reason, never retried."""
    out = Split()
    for raw in entries:
        try:
            body = json.loads(raw.body)
            result = parse_webhook(
                body,
                routing.account_id,
                entry_ids=routing.entry_ids,
                standby=routing.standby,
                horizon_ms=routing.replay_horizon_ms,
            )
        except Exception as exc:  # a parser bug must not wedge the intake log
            out.unreadable.append((raw, f"{type(exc).__name__}: {exc}"[:300]))
            continue
        out.readable.append(raw)
        out.skipped.extend(result.skipped)
        for event in result.events:
            out.events.append(event)
            if event.kind in WINDOW_KINDS:
                previous = out.latest.get(event.customer_id, 0)
                out.latest[event.customer_id] = max(previous, event.timestamp_ms)
            if event.kind in FORWARDED_KINDS:
                out.jobs.append(
                    NewJob(event.customer_id, event.dedupe_key, event.timestamp_ms, event.to_json())
                )
    return out


class _Lead:
    """Which replica splits: a record naming the holder until a time, renewed while it
    runs. Only an optimisation (replicas would otherwise read the same entries and all
    but one be refused): the position's compare-and-set is what keeps the order."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self._store = store
        self._lease = lease_seconds
        self._me = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._until = 0.0  # ours up to this time (monotonic), without asking again

    async def hold(self) -> bool:
        now = time.monotonic()
        if now < self._until - self._lease / 2:
            return True
        wall = time.time()
        current = await self._store.get_record(SPLITTER, LEAD_KEY)
        holder, until = _read_lead(current)
        if holder not in (None, self._me) and until > wall:
            self._until = 0.0
            return False
        claim = json.dumps({"holder": self._me, "until": wall + self._lease}).encode()
        if not await self._store.compare_and_put_record(
            SPLITTER, LEAD_KEY, current, claim, ttl_seconds=LEAD_RECORD_TTL_SECONDS
        ):
            return False
        if holder not in (None, self._me):
            log.info("splitting webhooks taken over", extra={"previous": holder})
        self._until = now + self._lease
        return True


def _read_lead(raw: bytes | None) -> tuple[str | None, float]:
    if raw is None:
        return None, 0.0
    try:
        value = json.loads(raw)
        return str(value["holder"]), float(value["until"])
    except (ValueError, KeyError, TypeError):
        return None, 0.0


class IntakeSplitter:
    """Drains the intake log batch by batch; wakes the inbound worker when it stored work."""

    def __init__(
        self,
        store: Store,
        routing: Routing,
        metrics: RelayMetrics,
        on_split: Callable[[], None],
        *,
        batch: int = 128,
        lease_seconds: float = 30.0,
        idle_poll: float = 0.5,
        shared: bool = False,
        parsed: JustStored | None = None,
    ) -> None:
        self._store = store
        self._routing = routing
        self._metrics = metrics
        self._on_split = on_split
        self._batch = batch
        self._lease = lease_seconds
        self._idle_poll = idle_poll
        # Replicas share the store: one of them splits at a time, so webhooks enter the
        # customers' queues in the order they were acked.
        self._shared = shared
        self._parsed = parsed  # what this process's inbound worker takes without decoding
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """A raw webhook was stored: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        lead = _Lead(self._store, self._lease) if self._shared else None
        while not self._stopping:
            self._wake.clear()  # before reading: work stored meanwhile still wakes us
            try:
                if lead is not None and not await lead.hold():
                    await self._idle()
                    continue
                batch = await self._store.read_intake(self._batch)
                if batch.entries:
                    await self.split_batch(batch)
                    if len(batch.entries) == self._batch:
                        continue  # a full batch: there is probably more
            except IntakeMoved as exc:
                # Another splitter consumed these entries first; go on after them.
                log.info("webhooks split elsewhere meanwhile: %s", exc)
                continue
            except StoreUnavailable as exc:
                # Nothing moved: the batch is read again, first, once the store answers (a
                # customer's later webhooks cannot overtake it).
                log.warning("store unavailable while splitting webhooks: %s", exc)
                await asyncio.sleep(1.0)
                continue
            await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._idle_poll)

    async def split_batch(self, batch: IntakeBatch) -> None:
        """Split the batch and consume it (raises IntakeMoved when another splitter did)."""
        out = split(batch.entries, self._routing)
        m = self._metrics
        stored = await self._store.consume_intake(
            batch.position,
            batch.entries[-1].id,
            INBOUND,
            out.jobs,
            out.latest,
            out.unreadable,
        )
        if self._parsed is not None:
            for event in out.events:
                if event.kind in FORWARDED_KINDS:
                    self._parsed.add(event)  # parsed once: the worker here takes it
        if stored.duplicates:
            m.duplicates.labels(INBOUND).inc(stored.duplicates)
        if stored.accepted:
            self._on_split()
        for entry, reason in out.unreadable:  # dead-lettered by the consume
            m.handler_errors.labels(INTAKE).inc()
            m.dead_lettered.labels(INTAKE, "unreadable").inc()
            log.error(
                "raw webhook unreadable: dead-lettered",
                extra={"entry": entry.id, "detail": reason},
            )
        # Counted once stored: a batch the store refused is split (and counted) again.
        for skipped in out.skipped:
            m.skipped.labels(skipped.reason).inc()
            level = logging.INFO if skipped.reason in QUIET_SKIPS else logging.WARNING
            log.log(
                level,
                "webhook item skipped",
                extra={"reason": skipped.reason, "detail": skipped.detail},
            )
        # One increment per kind and batch, not per event (each is a lock and, with two
        # processes, a write to the shared metrics file).
        for kind, count in Counter(event.kind for event in out.events).items():
            m.received.labels(kind.value).inc(count)
        for event in out.events:
            if event.kind not in FORWARDED_KINDS:
                m.not_forwarded.labels(await self._unforwarded_reason(event)).inc()
        try:
            await self._remember_comments(out.events)
        except StoreUnavailable as exc:
            log.error("comment reply records not updated: %s", exc)

    async def _unforwarded_reason(self, event: InstagramEvent) -> str:
        """Echoes of what the relay sent are told apart from what people sent in the app."""
        if event.kind is not EventKind.ECHO:
            return event.kind.value
        try:
            ours = await records.get(self._store, OWN_MESSAGES, event.dedupe_key)
        except StoreUnavailable:
            return "echo"
        return "own_echo" if ours else "echo"

    async def _remember_comments(self, events: list[InstagramEvent]) -> None:
        """For a conversation that starts with a comment: which comment a reply answers."""
        for event in events:
            if event.kind is EventKind.COMMENT:
                origin = CommentOrigin(event.dedupe_key, event.timestamp_ms)
                await records.put(self._store, COMMENT_ORIGIN, event.customer_id, origin)
