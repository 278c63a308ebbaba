"""Store upkeep: forget what no longer matters, so neither SQLite nor Redis grows forever;
and the queue gauges, read from the store when /metrics is scraped."""

from __future__ import annotations

import asyncio
import logging
import time

from .. import records
from ..metrics import RelayMetrics
from ..pipeline.window import WINDOW_MS, near_window_end
from ..records import (
    CONVERSATIONS,
    DEAD_LETTER_RETENTION_SECONDS,
    DEAD_LETTER_SOURCES,
    DEDUPE_RETENTION_SECONDS,
    INTAKE,
    QUEUES,
    WINDOW_RETENTION_SECONDS,
)
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 3600.0


async def maintain(store: Store) -> None:
    """Every hour: prune old dedupe keys, dead letters, customers' message times past
    their retention and expired records. (The intake log trims itself as it is split.)"""
    while True:
        try:
            for source in DEAD_LETTER_SOURCES:
                await store.prune_dead_letters(source, DEAD_LETTER_RETENTION_SECONDS)
            for queue in QUEUES:
                pruned = await store.prune_dedupe(queue, DEDUPE_RETENTION_SECONDS)
                if pruned:
                    log.info("pruned old dedupe keys", extra={"queue": queue, "count": pruned})
        except StoreUnavailable as exc:
            log.warning("dedupe pruning skipped: %s", exc)
        try:
            await store.prune_windows(WINDOW_RETENTION_SECONDS)
            await store.prune_records()
        except StoreUnavailable as exc:
            log.warning("record pruning skipped: %s", exc)
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)


async def refresh_gauges(store: Store, m: RelayMetrics, escalate_after: float) -> None:
    for queue in QUEUES:
        m.queue_depth.labels(queue).set(await store.depth(queue))
        m.oldest_job_age.labels(queue).set(await store.oldest_age(queue) or 0.0)
    # The intake log's backlog under the same names: webhooks acked, not yet split.
    backlog = await store.intake_backlog()
    m.queue_depth.labels(INTAKE).set(backlog.entries)
    m.oldest_job_age.labels(INTAKE).set(backlog.oldest_age or 0.0)
    for source in DEAD_LETTER_SOURCES:
        m.dead_letters.labels(source).set(await store.dead_letter_count(source))
    m.near_window_end.set(await customers_near_window_end(store, escalate_after))


async def customers_near_window_end(
    store: Store, escalate_after: float, *, now_ms: int | None = None
) -> int:
    """Customers still waiting for an answer whose last message is past the escalation
    threshold while their 24-hour window is still open. Those already answered are not
    counted: the window records say who last wrote in that band (read by time, so a few
    hours of customers), the SLA records which of them still wait."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    after_ms = int(escalate_after * 1000)
    count = 0
    for customer, last in await store.window_customers(now - WINDOW_MS, now - after_ms):
        state = await records.get(store, CONVERSATIONS, customer)
        since = None if state is None else state.waiting_since_ms
        count += near_window_end(now, last, since, after_ms)
    return count
