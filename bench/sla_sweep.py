"""One SLA sweep over a store holding many customers, on SQLite and on Redis.

The store is filled the way the relay fills it, through the relay's own calls
(``customer_waiting`` when a customer's message reaches Genesys, ``customer_answered``
when a reply reaches them), so whatever records and indexes the relay keeps per customer
are what is measured, in this version of the code or the next. Most customers have been
answered, some wait, a few are past the escalation threshold.

Two sweeps are timed: the first escalates the due customers (a PATCH each to the Genesys
simulator, which knows their conversations); the second finds nothing left to do, the
cost every replica pays every minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.rest import GenesysRest
from igbridge.relay.http import new_session
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.store import Store, open_store
from igbridge.relay.tasks.sla import SlaSweeper, customer_answered, customer_waiting
from igbridge.relay.tasks.sla import log as sweep_log
from igbridge.sandbox.stack import Sandbox

ESCALATE_AFTER = 20 * 3600.0  # the relay's default threshold
HOUR_MS = 3600 * 1000


@dataclass(frozen=True)
class SweepResult:
    fill_seconds: float
    first_sweep_seconds: float  # escalating the due customers
    idle_sweep_seconds: float  # nothing left to escalate
    escalated: int


DUE_EVERY = 1000  # one customer in a thousand waits past the threshold
WAITING_EVERY = 10  # one in ten waits, not for long yet; the others were answered


def due(i: int) -> bool:
    return customer_state(i) == "due"


def customer_state(i: int, due_every: int = DUE_EVERY, waiting_every: int = WAITING_EVERY) -> str:
    """Customer i's state: "due" (waiting past the threshold), "waiting", or "answered"."""
    if i % due_every == 0:
        return "due"
    if i % waiting_every == 0:
        return "waiting"
    return "answered"


async def _in_batches(calls: list[Callable[[], Awaitable[None]]], width: int = 32) -> None:
    for start in range(0, len(calls), width):
        await asyncio.gather(*(call() for call in calls[start : start + width]))


async def fill(
    store: Store,
    customers: int,
    due_every: int,
    waiting_every: int,
    open_conversation: Callable[[str], str],
) -> None:
    """``open_conversation``: a customer's conversation in the Genesys simulator, for the
    customers due (the sweep's PATCH finds them in the queue); the others' conversations
    are never asked for."""
    now_ms = int(time.time() * 1000)

    def one(i: int) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            customer = f"9{i:07d}"
            state = customer_state(i, due_every, waiting_every)
            since = now_ms - (21 if state == "due" else 2) * HOUR_MS
            conversation = open_conversation(customer) if state == "due" else f"conv-{i}"
            await customer_waiting(store, customer, conversation, since)
            if state == "answered":
                await customer_answered(store, customer)

        return call

    await _in_batches([one(i) for i in range(customers)])


async def sweep_bench(
    sb: Sandbox,
    store_url: str,
    customers: int,
    due_every: int = DUE_EVERY,
    waiting_every: int = WAITING_EVERY,
) -> SweepResult:
    # The sweep logs a warning per escalation, as in the relay; here they go nowhere
    # rather than to the benchmark's table (the records are still made and timed).
    discard, propagated = logging.NullHandler(), sweep_log.propagate
    sweep_log.addHandler(discard)
    sweep_log.propagate = False
    store = open_store(store_url, prefix="sweep")
    await store.open()
    try:
        started = time.perf_counter()
        await fill(store, customers, due_every, waiting_every, sb.genesys.open_conversation)
        filled = time.perf_counter() - started
        async with new_session(timeout=10) as http:
            tokens = TokenProvider(
                http, sb.genesys_server.url, sb.genesys.client_id, sb.genesys.client_secret
            )
            sweeper = SlaSweeper(
                store,
                GenesysRest(http, sb.genesys_server.url, tokens),
                RelayMetrics(),
                escalate_after=ESCALATE_AFTER,
                priority=10,
            )
            started = time.perf_counter()
            escalated = await sweeper.sweep()
            first = time.perf_counter() - started
            started = time.perf_counter()
            await sweeper.sweep()
            idle = time.perf_counter() - started
    finally:
        await store.close()
        sweep_log.removeHandler(discard)
        sweep_log.propagate = propagated
    return SweepResult(filled, first, idle, escalated)


def sqlite_size_mb(path: Path) -> float:
    """The database with its write-ahead log: what the disk holds."""
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6
