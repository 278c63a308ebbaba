"""Store upkeep: forget what no longer matters, so neither SQLite nor Redis grows forever;
and the queue gauges, read from the store when /metrics is scraped."""

from __future__ import annotations

import asyncio
import logging
import time

from ..metrics import RelayMetrics
from ..pipeline.window import WINDOW_MS
from ..records import DEAD_LETTER_RETENTION_SECONDS, DEDUPE_RETENTION_SECONDS, QUEUES
from ..store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_SECONDS = 3600.0


async def maintain(store: Store) -> None:
    """Every hour: prune old dedupe keys, dead letters and expired records."""
    while True:
        for queue in QUEUES:
            try:
                await store.prune_dead_letters(queue, DEAD_LETTER_RETENTION_SECONDS)
                pruned = await store.prune_dedupe(queue, DEDUPE_RETENTION_SECONDS)
                if pruned:
                    log.info("pruned old dedupe keys", extra={"queue": queue, "count": pruned})
            except StoreUnavailable as exc:
                log.warning("dedupe pruning skipped: %s", exc)
        try:
            await store.prune_records()
        except StoreUnavailable as exc:
            log.warning("record pruning skipped: %s", exc)
        await asyncio.sleep(MAINTENANCE_INTERVAL_SECONDS)


async def refresh_gauges(store: Store, m: RelayMetrics, escalate_after: float) -> None:
    for queue in QUEUES:
        m.queue_depth.labels(queue).set(await store.depth(queue))
        m.dead_letters.labels(queue).set(await store.dead_letter_count(queue))
        m.oldest_job_age.labels(queue).set(await store.oldest_age(queue) or 0.0)
    m.near_window_end.set(await customers_near_window_end(store, escalate_after))


async def customers_near_window_end(store: Store, escalate_after: float) -> int:
    """Customers past the escalation threshold whose 24-hour window is still open."""
    now_ms = int(time.time() * 1000)
    return await store.customers_waiting(now_ms - WINDOW_MS, now_ms - int(escalate_after * 1000))
