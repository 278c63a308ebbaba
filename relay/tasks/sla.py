"""SLA escalation before Meta's 24-hour window closes.

Each customer's *waiting period* starts with their first unanswered message (Meta's
clock) and ends with a delivered reply. A sweeper raises the Genesys conversation's
routing priority once per waiting period when it passes ``IGBRIDGE_WINDOW_ESCALATE_AFTER``
(20 h by default), and raises an alert (metric, log line, optional webhook). The state
lives in the store, so a restart neither forgets nor repeats an escalation.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from .. import records
from ..genesys.errors import GenesysError, PermanentError, TransientError
from ..genesys.rest import JSON_UTF8, GenesysRest
from ..http import TRANSPORT_ERRORS, fetch
from ..meta.events import EventKind, InstagramEvent
from ..metrics import RelayMetrics
from ..records import CONVERSATION_TTL_SECONDS, CONVERSATIONS, Conversation
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

# How long a sweeper's claim on an escalation holds if its replica dies mid-way.
CLAIM_SECONDS = 60.0
# Due customers read per sweep: a sweep's cost follows what is due, never who was seen.
SWEEP_BATCH = 1000
# Set once the SLA records written before the due index existed have been indexed.
INDEX_MARKER = ("sla_index", "due_v1")

# What a customer sends that waits for an agent's answer. A mention is not among them:
# it is someone's comment elsewhere, answerable only publicly in the Instagram app, so an
# escalation would only hurry an agent into a reply Instagram refuses.
WAITING_KINDS = frozenset(
    {EventKind.MESSAGE, EventKind.POSTBACK, EventKind.REFERRAL, EventKind.COMMENT}
)


def waits_for_answer(event: InstagramEvent) -> bool:
    """Whether delivering the event starts (or continues) the customer's waiting period.
    A standby copy belongs to the app that controls the thread: this channel cannot answer."""
    return event.kind in WAITING_KINDS and not event.standby


async def customer_waiting(
    store: Store, customer: str, conversation_id: str | None, message_ms: int
) -> Conversation:
    """A customer's message reached Genesys: they wait from their first unanswered one.
    Returns their state as it now stands."""
    now: list[Conversation] = []

    def wait(state: Conversation | None) -> Conversation | None:
        state = state or Conversation()
        now[:] = [state]
        waiting = state.waiting_since_ms
        if (
            waiting is not None
            and waiting <= message_ms
            and conversation_id in (None, state.conversation_id)
        ):
            return None  # already waiting since then, in this conversation: nothing to write
        return state.model_copy(
            update={
                "conversation_id": conversation_id or state.conversation_id,
                "waiting_since_ms": message_ms if waiting is None else min(waiting, message_ms),
                "escalated": False if waiting is None else state.escalated,
            }
        )

    # A customer's later messages usually change nothing: then nothing is encoded or written.
    written = await records.change(store, CONVERSATIONS, customer, wait)
    return written or now[0]


async def customer_answered(store: Store, customer: str) -> None:
    """A reply reached the customer: the clock stops (and restarts with their next message)."""

    def answered(state: Conversation | None) -> Conversation | None:
        if state is None or state.waiting_since_ms is None:
            return None
        return state.model_copy(
            update={"waiting_since_ms": None, "escalated": False, "claimed_until": 0.0}
        )

    await records.change(store, CONVERSATIONS, customer, answered)


@dataclass(frozen=True, slots=True, eq=False)
class _Known:
    """A customer's waiting period as this process last read or wrote it (compared by
    identity: an answer replaces it with a new one)."""

    until: float  # unix seconds: trusted no longer
    conversation_id: str | None = None
    waiting_since_ms: int | None = None


# How long a remembered waiting period is trusted; and how many customers are remembered.
KNOWN_SECONDS = 600.0
KNOWN_CUSTOMERS = 100_000
# Meta's timestamps may run ahead of this machine's clock: a record's time to live is
# counted from its write, so the memory of it ends this much earlier to be safe.
CLOCK_SLACK_SECONDS = 86400.0


class SlaClock:
    """Starts and stops customers' SLA clocks (``customer_waiting``/``customer_answered``).

    ``remember``: this process is the only one to change waiting periods (one relay: its
    delivery process holds both workers and the sweeper, which never moves a waiting
    period). Then a customer already known to wait since an earlier message of the same
    conversation needs no store read at all for their next one — the common case, one read
    per inbound message otherwise. Replicas share the records, so they always read."""

    def __init__(
        self, store: Store, *, remember: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._remember = remember
        self._clock = clock
        self._known: dict[str, _Known] = {}

    async def waiting(self, customer: str, conversation_id: str | None, message_ms: int) -> None:
        if not self._remember:
            await customer_waiting(self._store, customer, conversation_id, message_ms)
            return
        now = self._clock()
        seen = self._known.get(customer)
        if (
            seen is not None
            and seen.until > now
            and seen.waiting_since_ms is not None
            and seen.waiting_since_ms <= message_ms
            and conversation_id in (None, seen.conversation_id)
        ):
            return  # what customer_waiting would find: nothing to change
        state = await customer_waiting(self._store, customer, conversation_id, message_ms)
        if self._known.get(customer) is not seen:
            return  # answered (or read again) meanwhile: what was read may be stale
        since = state.waiting_since_ms
        if since is None:
            return
        until = min(
            now + KNOWN_SECONDS, since / 1000 + CONVERSATION_TTL_SECONDS - CLOCK_SLACK_SECONDS
        )
        if len(self._known) >= KNOWN_CUSTOMERS:
            self._known.clear()  # bounded: forgetting only costs a read
        self._known[customer] = _Known(until, state.conversation_id, since)

    async def answered(self, customer: str) -> None:
        if self._remember:
            # Before the store is asked: a waiting() under way must not keep what it read.
            self._known[customer] = _Known(0.0)
        await customer_answered(self._store, customer)


class SlaSweeper:
    def __init__(
        self,
        store: Store,
        rest: GenesysRest,
        metrics: RelayMetrics,
        *,
        escalate_after: float,
        priority: int,
        interval: float = 60.0,
        alert_url: str | None = None,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self._store = store
        self._rest = rest
        self._metrics = metrics
        self._after_ms = int(escalate_after * 1000)
        self._priority = priority
        self._interval = interval
        self._alert_url = alert_url
        self._http = http

    async def run(self) -> None:
        indexed = False
        while True:
            try:
                if not indexed:
                    await index_earlier_records(self._store)
                    indexed = True
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("sla sweep skipped: %s", exc)
            await asyncio.sleep(self._interval)

    async def sweep(self) -> int:
        """Escalate every conversation past the threshold that is not escalated yet.

        Only those are read: the store indexes a waiting customer by the start of their
        wait until an answer or the escalation. Every replica sweeps; a compare-and-set
        claim on the customer's record makes one of them do each escalation."""
        now = time.time()
        now_ms = int(now * 1000)
        escalated = 0
        until = (now_ms - self._after_ms) / 1000
        for customer, state in await records.due(self._store, CONVERSATIONS, until, SWEEP_BATCH):
            since = state.waiting_since_ms
            if since is None or not self._due(state, since, now_ms, now):
                continue
            claim = functools.partial(self._claim, since, now_ms, now)
            claimed = await records.change(self._store, CONVERSATIONS, customer, claim)
            if claimed is None:
                continue  # another replica claimed it, or the customer was just answered
            conversation = claimed.conversation_id
            assert conversation is not None
            outcome = await self._escalate(conversation)
            await records.change(
                self._store,
                CONVERSATIONS,
                customer,
                functools.partial(_settle_claim, since, outcome),
            )
            if outcome is None:
                continue
            waited = (now_ms - since) / 1000
            self._metrics.sla_escalations.labels(outcome).inc()
            if outcome == "escalated":
                escalated += 1
                log.warning(
                    "customer waiting near Meta's 24-hour limit: priority raised",
                    extra={
                        "customer": customer,
                        "conversation_id": conversation,
                        "waited_seconds": round(waited),
                        "priority": self._priority,
                    },
                )
                await self._alert(customer, conversation, waited)
        return escalated

    def _due(self, state: Conversation, since: int, now_ms: int, now: float) -> bool:
        """Past the threshold, not escalated yet, with a conversation to raise, unclaimed."""
        return (
            not state.escalated
            and now_ms - since >= self._after_ms
            and bool(state.conversation_id)
            and state.claimed_until <= now
        )

    def _claim(
        self, since: int, now_ms: int, now: float, state: Conversation | None
    ) -> Conversation | None:
        # Re-checked on the fresh record: the customer may have been answered meanwhile.
        if state is None or state.waiting_since_ms != since:
            return None
        if not self._due(state, since, now_ms, now):
            return None
        return state.model_copy(update={"claimed_until": now + CLAIM_SECONDS})

    async def _escalate(self, conversation: str) -> str | None:
        """Raise the priority; the outcome label, or None to try again next sweep."""
        try:
            await self._rest.request(
                "PATCH",
                f"/api/v2/routing/conversations/{conversation}",
                {"priority": self._priority},
            )
            return "escalated"
        except TransientError as exc:
            log.warning("sla escalation will be retried", extra={"error": str(exc)})
            return None
        except PermanentError as exc:
            # Genesys refuses priority changes once an agent has the conversation.
            log.info("sla escalation not needed", extra={"reason": str(exc)})
            return "not_in_queue"
        except GenesysError as exc:
            log.warning("sla escalation failed", extra={"error": str(exc)})
            return None

    async def _alert(self, customer: str, conversation: str, waited: float) -> None:
        if not self._alert_url or self._http is None:
            return
        body = {
            "event": "sla_escalation",
            "customer": customer,
            "conversationId": conversation,
            "waitingSeconds": round(waited),
            "priority": self._priority,
        }
        try:
            resp = await fetch(
                self._http,
                "POST",
                self._alert_url,
                data=json.dumps(body).encode(),
                headers={"Content-Type": JSON_UTF8},
                total=5.0,
            )
        except TRANSPORT_ERRORS as exc:
            log.warning("sla alert webhook failed", extra={"error": type(exc).__name__})
            return
        if not resp.ok:
            log.warning("sla alert webhook refused", extra={"status": resp.status})


async def index_earlier_records(store: Store) -> None:
    """Index the waiting customers a relay without the due index stored (once per store:
    a marker record says it is done), so an upgrade forgets no one's escalation."""
    namespace, key = INDEX_MARKER
    if await store.get_record(namespace, key) is not None:
        return
    count = 0
    for customer, raw in await store.list_records(CONVERSATIONS.namespace):
        due = CONVERSATIONS.due_at(CONVERSATIONS.load(raw))
        if due is not None and await store.compare_and_put_record(
            CONVERSATIONS.namespace,
            customer,
            raw,
            raw,
            ttl_seconds=CONVERSATIONS.ttl_seconds,
            due_at=due,
        ):
            count += 1
    await store.put_record(namespace, key, b"1")
    if count:
        log.info("sla: waiting customers indexed by due time", extra={"count": count})


def _settle_claim(since: int, outcome: str | None, state: Conversation | None) -> Conversation:
    """Drop the sweeper's claim; mark the waiting period escalated if it is still the
    same period (a reply may have ended it meanwhile)."""
    state = state or Conversation()
    current = state.waiting_since_ms
    done = outcome is not None and current is not None and current <= since
    return state.model_copy(update={"claimed_until": 0.0, "escalated": state.escalated or done})
