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
from typing import Any

import httpx

from ..genesys.errors import GenesysError, PermanentError, TransientError
from ..genesys.rest import GenesysRest
from ..metrics import RelayMetrics
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

CONVERSATIONS = "conversation"


# Attempts at a compare-and-set before giving up on an update (only under heavy contention
# for one customer's record, which per-customer ordering makes rare).
CAS_ATTEMPTS = 20
# How long a sweeper's claim on an escalation holds if its replica dies mid-way.
CLAIM_SECONDS = 60.0

State = dict[str, Any]


async def _update(store: Store, customer: str, change: Callable[[State], bool]) -> bool:
    """Apply ``change`` (which returns False to leave the record alone) atomically: the
    inbound and outbound workers, on any replica, may touch one customer at once."""
    for _ in range(CAS_ATTEMPTS):
        raw = await store.get_record(CONVERSATIONS, customer)
        state: State = json.loads(raw) if raw else {}
        if not change(state):
            return False
        if await store.compare_and_put_record(
            CONVERSATIONS, customer, raw, json.dumps(state).encode()
        ):
            return True
    log.warning("sla state update gave up under contention", extra={"customer": customer})
    return False


async def customer_waiting(
    store: Store, customer: str, conversation_id: str | None, message_ms: int
) -> None:
    """A customer's message reached Genesys: they wait from their first unanswered one."""

    def change(state: State) -> bool:
        before = dict(state)
        if conversation_id:
            state["conversation_id"] = conversation_id
        if state.get("waiting_since_ms") is None:
            state["waiting_since_ms"] = message_ms
            state["escalated"] = False
        else:
            state["waiting_since_ms"] = min(state["waiting_since_ms"], message_ms)
        return state != before  # a customer's later messages usually change nothing

    await _update(store, customer, change)


async def customer_answered(store: Store, customer: str) -> None:
    """A reply reached the customer: the clock stops (and restarts with their next message)."""

    def change(state: State) -> bool:
        if state.get("waiting_since_ms") is None:
            return False
        state["waiting_since_ms"] = None
        state["escalated"] = False
        state.pop("claimed_until", None)
        return True

    await _update(store, customer, change)


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
        http: httpx.AsyncClient | None = None,
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
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("sla sweep skipped: %s", exc)
            await asyncio.sleep(self._interval)

    async def sweep(self) -> int:
        """Escalate every conversation past the threshold that is not escalated yet.

        Every replica sweeps; a compare-and-set claim on the customer's record makes one
        of them do each escalation."""
        now = time.time()
        now_ms = int(now * 1000)
        escalated = 0
        for customer, raw in await self._store.list_records(CONVERSATIONS):
            state = json.loads(raw)
            since = state.get("waiting_since_ms")
            if since is None or state.get("escalated") or now_ms - since < self._after_ms:
                continue
            conversation = state.get("conversation_id")
            if not conversation or state.get("claimed_until", 0) > now:
                continue
            claim = json.dumps({**state, "claimed_until": now + CLAIM_SECONDS}).encode()
            if not await self._store.compare_and_put_record(CONVERSATIONS, customer, raw, claim):
                continue  # another replica claimed it, or the customer was just answered
            outcome = await self._escalate(conversation)
            done = await _update(
                self._store, customer, functools.partial(_settle_claim, since, outcome)
            )
            if not done or outcome is None:
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
            await self._http.post(self._alert_url, json=body, timeout=5.0)
        except httpx.HTTPError as exc:
            log.warning("sla alert webhook failed", extra={"error": type(exc).__name__})


def _settle_claim(since: int, outcome: str | None, state: State) -> bool:
    """Drop the sweeper's claim; mark the waiting period escalated if it is still the
    same period (a reply may have ended it meanwhile)."""
    state.pop("claimed_until", None)
    current = state.get("waiting_since_ms")
    if outcome is not None and current is not None and current <= since:
        state["escalated"] = True
    return True
