"""The relay's own report into its InstagramChannel's ``status.relay``.

Every pod patches the status subresource on a timer (kubernetes-asyncio, with the Role the
operator grants it: its own channel's status only). The operator turns a report that
stops arriving into ``RelayAvailable=False``.

With several replicas each pod keeps its own entry under ``status.relay.pods`` (a merge
patch touches only that key) and writes the channel-wide summary from what it read just
before: counters summed over the pods that still report, ready only if all of them are,
queue figures from the shared store. Entries of pods that stopped reporting (rolled over,
scaled down, crashed) are dropped by whichever pod reports next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from .. import records
from ..channel_status import PodReport, format_heartbeat, merge_pod_report, status_path
from ..config import Settings
from ..health import RelayHealth
from ..metrics import RelayMetrics
from ..records import DEAD_LETTER_SOURCES, QUEUES, TOTALS
from ..store.base import Store, StoreUnavailable
from .maintenance import customers_near_window_end

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

log = logging.getLogger(__name__)

# A pod entry older than this many report intervals belongs to a pod that is gone.
STALE_INTERVALS = 4


class StatusReporter:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: RelayMetrics,
        health: RelayHealth,
        *,
        interval: float = 15.0,
    ) -> None:
        assert settings.channel_name
        assert settings.channel_namespace
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._health = health
        self._interval = interval
        self._counted: dict[str, int] = {}  # what this pod added to the channel's totals
        self._path = status_path(settings.channel_namespace, settings.channel_name)

    @property
    def _pod(self) -> str:
        return self._settings.pod_name or "relay"

    async def channel_totals(self, mine: dict[str, Any]) -> dict[str, int]:
        """``messagesIn``/``messagesOut`` for the whole channel since it started: each pod
        adds what it counted since its last report to totals kept in the store, so the
        figures survive pod restarts and add up across replicas. Empty if the store is
        away (the summed pod counts stand in)."""
        totals: dict[str, int] = {}
        try:
            for field in ("messagesIn", "messagesOut"):
                counted = int(mine.get(field) or 0)
                delta = counted - self._counted.get(field, 0)
                totals[field] = await _add_to_total(self._store, field, delta)
                self._counted[field] = counted
        except StoreUnavailable:
            return {}
        return totals

    def _counter(self, name: str, labels: dict[str, str] | None = None) -> int:
        value = self._metrics.registry.get_sample_value(name, labels or {})
        return int(value or 0)

    async def report(self) -> dict[str, Any]:
        """What this pod says about itself now."""
        depth = dead = near = 0
        store_error = None
        now = time.time()
        try:
            for queue in QUEUES:
                depth += await self._store.depth(queue)
            depth += (await self._store.intake_backlog()).entries
            for source in DEAD_LETTER_SOURCES:
                dead += await self._store.dead_letter_count(source)
            near = await customers_near_window_end(
                self._store, self._settings.window_escalate_after
            )
        except StoreUnavailable as exc:
            store_error = str(exc)
        problems = [
            p
            for p in (self._health.genesys_auth_error, self._health.meta_token_error, store_error)
            if p
        ]
        return PodReport(
            last_heartbeat=format_heartbeat(now),
            pod=self._settings.pod_name,
            ready=not problems,
            messages_in=self._counter("igbridge_delivered_total", {"queue": "inbound"}),
            messages_out=self._counter("igbridge_outbound_sent_total"),
            queue_depth=depth,
            dead_letters=dead,
            near_window_end=near,
            last_error=problems[0] if problems else None,
            guard=self._guard_summary(),
        ).wire()

    def _guard_summary(self) -> dict[str, int]:
        """What the guard did since this pod started, by outcome."""
        registry = self._metrics.registry
        spam: dict[str, int] = {"dropped": 0, "flagged": 0}
        for family in registry.collect():
            if family.name != "igbridge_guard":
                continue
            for sample in family.samples:
                outcome = sample.labels.get("outcome", "")
                if sample.name.endswith("_total") and outcome in spam:
                    spam[outcome] += int(sample.value)
        return {
            "spamDropped": spam["dropped"],
            "spamFlagged": spam["flagged"],
            "loopsDetected": self._counter("igbridge_loops_detected_total"),
            "botRepliesHeld": self._counter("igbridge_loop_held_total"),
            "slaEscalations": self._counter(
                "igbridge_sla_escalations_total", {"outcome": "escalated"}
            ),
        }

    async def run(self) -> None:
        api = await _api_client()
        try:
            while True:
                try:
                    current = await api.call_api(
                        self._path,
                        "GET",
                        header_params={"Accept": "application/json"},
                        auth_settings=["BearerToken"],
                        _return_http_data_only=True,
                        response_types_map={200: "object"},
                    )
                    relay = ((current or {}).get("status") or {}).get("relay") or {}
                    report = merge_pod_report(
                        self._pod,
                        await self.report(),
                        relay,
                        stale_after=self._interval * STALE_INTERVALS,
                    )
                    report.update(await self.channel_totals(report["pods"][self._pod]))
                    body = {"status": {"relay": report}}
                    await api.call_api(
                        self._path,
                        "PATCH",
                        body=body,
                        header_params={
                            "Content-Type": "application/merge-patch+json",
                            "Accept": "application/json",
                        },
                        auth_settings=["BearerToken"],
                        _return_http_data_only=True,
                        response_types_map={200: "object"},
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # reporting must never take the relay down
                    log.warning(
                        "status report failed",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                    )
                await asyncio.sleep(self._interval)
        finally:
            await api.close()


async def _add_to_total(store: Store, field: str, delta: int) -> int:
    """Add to a channel-wide counter record (compare-and-set: replicas add at once)."""
    if delta == 0:
        return await records.get(store, TOTALS, field) or 0
    added = await records.change(store, TOTALS, field, lambda total: (total or 0) + delta)
    assert added is not None
    return added


async def _api_client() -> ApiClient:
    # Imported here: the Kubernetes client is half the relay's modules and a tenth of its
    # start-up objects, and a relay outside a cluster never needs it.
    from kubernetes_asyncio import config as kube_config
    from kubernetes_asyncio.client import ApiClient

    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        await kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return ApiClient()
