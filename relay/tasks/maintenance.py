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
    DEAD_LETTER_SOURCES,
    INTAKE,
    QUEUES,
    Retention,
)
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 3600.0


async def maintain(store: Store, retention: Retention | None = None) -> None:
    """Every hour: apply the retention in force (``prune``). The intake log trims itself as
    it is split; delivered jobs are deleted when delivered."""
    while True:
        await prune(store, retention or Retention())
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)


async def prune(store: Store, retention: Retention) -> dict[str, int]:
    """One round: forget dedupe keys, dead letters, customers' message times and records
    past their retention, and blank dead letters' text past its shorter period. Returns
    how many of each went; a store outage skips the rest of the round (the next tries)."""
    done = {"dead_letter_payloads": 0, "dead_letters": 0, "dedupe": 0, "windows": 0}
    try:
        for source in DEAD_LETTER_SOURCES:
            done["dead_letters"] += await store.prune_dead_letters(
                source, retention.dead_letter_seconds
            )
            done["dead_letter_payloads"] += await store.blank_dead_letter_payloads(
                source, retention.dead_letter_payload_seconds
            )
        for queue in QUEUES:
            done["dedupe"] += await store.prune_dedupe(queue, retention.dedupe_seconds)
        done["windows"] = await store.prune_windows(retention.window_seconds)
        done["records"] = await store.prune_records()
    except StoreUnavailable as exc:
        log.warning("store pruning skipped: %s", exc)
    if any(done.values()):
        log.info("retention applied", extra={"pruned": done})
    return done


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
