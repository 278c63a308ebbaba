"""SLA escalation before Meta's 24-hour window closes.

Each customer's *waiting period* starts with their first unanswered message (Meta's
clock) and ends with a delivered reply. A sweeper raises the Genesys conversation's
routing priority once per waiting period when it passes ``IGBRIDGE_WINDOW_ESCALATE_AFTER``
(20 h by default), and raises an alert (metric, log line, optional webhook). The state
lives in the store, so a restart neither forgets nor repeats an escalation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx

from .genesys.errors import GenesysError, PermanentError, TransientError
from .genesys.rest import GenesysRest
from .metrics import RelayMetrics
from .store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

CONVERSATIONS = "conversation"


async def _load(store: Store, customer: str) -> dict[str, Any]:
    raw = await store.get_record(CONVERSATIONS, customer)
    return json.loads(raw) if raw else {}


async def _save(store: Store, customer: str, state: dict[str, Any]) -> None:
    await store.put_record(CONVERSATIONS, customer, json.dumps(state).encode())


async def customer_waiting(
    store: Store, customer: str, conversation_id: str | None, message_ms: int
) -> None:
    """A customer's message reached Genesys: they wait from their first unanswered one."""
    state = await _load(store, customer)
    if conversation_id:
        state["conversation_id"] = conversation_id
    if state.get("waiting_since_ms") is None:
        state["waiting_since_ms"] = message_ms
        state["escalated"] = False
    else:
        state["waiting_since_ms"] = min(state["waiting_since_ms"], message_ms)
    await _save(store, customer, state)


async def customer_answered(store: Store, customer: str) -> None:
    """A reply reached the customer: the clock stops (and restarts with their next message)."""
    state = await _load(store, customer)
    if state.get("waiting_since_ms") is not None:
        state["waiting_since_ms"] = None
        state["escalated"] = False
        await _save(store, customer, state)


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
        """Escalate every conversation past the threshold that is not escalated yet."""
        now_ms = int(time.time() * 1000)
        escalated = 0
        for customer, raw in await self._store.list_records(CONVERSATIONS):
            state = json.loads(raw)
            since = state.get("waiting_since_ms")
            if since is None or state.get("escalated") or now_ms - since < self._after_ms:
                continue
            conversation = state.get("conversation_id")
            if not conversation:
                continue
            try:
                await self._rest.request(
                    "PATCH",
                    f"/api/v2/routing/conversations/{conversation}",
                    {"priority": self._priority},
                )
                outcome = "escalated"
            except TransientError as exc:
                log.warning("sla escalation will be retried", extra={"error": str(exc)})
                continue
            except PermanentError as exc:
                # Genesys refuses priority changes once an agent has the conversation.
                outcome = "not_in_queue"
                log.info("sla escalation not needed", extra={"reason": str(exc)})
            except GenesysError as exc:
                log.warning("sla escalation failed", extra={"error": str(exc)})
                continue
            state["escalated"] = True
            await _save(self._store, customer, state)
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
