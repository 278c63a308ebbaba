"""Prometheus metrics for one relay instance (own registry, so tests can run several).

When the relay runs as two processes (``serve``: one answers webhooks, one delivers),
``PROMETHEUS_MULTIPROC_DIR`` names a folder both write their values to and ``/metrics``
shows the sum (gauges: the latest value set, by whichever process set it).

Process and Python series (``process_*``, ``python_info``, ``python_gc_*``) describe the
process serving ``/metrics``: they are read when scraped, so cannot go through the shared
folder. The delivery process's CPU and memory are read from its ``/proc`` entry by the web
process (its parent) instead, as ``igbridge_delivery_process_*``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .link import MULTIPROCESS_DIR
from .version import VERSION

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
ACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The delivery process's id, once the web process started it (``serve``).
        self.delivery_pid: int | None = None
        _add_runtime_collectors(r)
        self.build_info = Gauge(
            "igbridge_build_info",
            "Always 1; the version label says which igbridge this relay runs.",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(VERSION).set(1)
        self.webhook_requests = Counter(
            "igbridge_webhook_requests",
            "Webhook requests answered, by route and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            "igbridge_webhook_ack_seconds",
            "Time from a webhook request's arrival to its answer.",
            ["route"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.received = Counter(
            "igbridge_events_received",
            "Instagram events parsed from verified webhooks, by kind.",
            ["kind"],
            registry=r,
        )
        self.skipped = Counter(
            "igbridge_events_skipped",
            "Webhook items that produced no event (unknown shapes, own comments, ...), by reason.",
            ["reason"],
            registry=r,
        )
        self.not_forwarded = Counter(
            "igbridge_events_not_forwarded",
            "Events deliberately not sent to Genesys (echoes, seen receipts, ...), by reason.",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "igbridge_duplicates",
            "Jobs dropped because their platform message id was already seen.",
            ["queue"],
            registry=r,
        )
        self.delivered = Counter(
            "igbridge_delivered", "Jobs delivered to the far side.", ["queue"], registry=r
        )
        self.retries = Counter(
            "igbridge_delivery_retries",
            "Delivery attempts that will be retried, by reason.",
            ["queue", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "igbridge_dead_lettered",
            "Jobs moved to the dead-letter record, by reason class.",
            ["queue", "reason"],
            registry=r,
        )
        self.handler_errors = Counter(
            "igbridge_handler_errors",
            "Jobs whose handling raised an unexpected exception (a bug to report), by queue.",
            ["queue"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "igbridge_http_client_disconnects",
            "Requests whose client left (or was cut off at the body deadline) before its body "
            "arrived: nothing was stored.",
            registry=r,
        )
        self.delivery_latency = Histogram(
            "igbridge_delivery_latency_seconds",
            "Time from a job's durable acceptance to its delivery.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "igbridge_queue_depth",
            "Jobs waiting or in flight.",
            ["queue"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.dead_letters = Gauge(
            "igbridge_dead_letters",
            "Jobs in the dead-letter record.",
            ["queue"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.oldest_job_age = Gauge(
            "igbridge_oldest_job_age_seconds",
            "How long the oldest waiting job has waited.",
            ["queue"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.media_probes = Counter(
            "igbridge_media_probes",
            "Attachment MIME checks, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.answers = Counter(
            "igbridge_answers",
            "Customers' quick-reply and button answers: structured (with the agent message "
            "that offered them), no_origin or refused_as_structured (both sent as text).",
            ["outcome"],
            registry=r,
        )
        self.outbound_sent = Counter(
            "igbridge_outbound_sent",
            "Send API messages Instagram accepted (a long reply counts once per part).",
            registry=r,
        )
        self.outbound_failed = Counter(
            "igbridge_outbound_failed",
            "Agent messages that ended in a Failed receipt, by Genesys reason code.",
            ["reason"],
            registry=r,
        )
        self.dead_letter_receipts = Counter(
            "igbridge_dead_letter_receipts",
            "Final receipts for dead-lettered agent messages, by result: sent, not_sent "
            "(Genesys unreachable or refusing; not retried), receipt_refused (the dead "
            "letter was Genesys refusing the receipt itself), unaddressable (no message id).",
            ["result"],
            registry=r,
        )
        self.outbound_tagged = Counter(
            "igbridge_outbound_tagged",
            "Agent messages sent after 24 h with the HUMAN_AGENT tag.",
            registry=r,
        )
        self.window_expired = Counter(
            "igbridge_window_expired",
            "Agent messages not sent because Meta's reply window had closed.",
            registry=r,
        )
        self.near_window_end = Gauge(
            "igbridge_conversations_near_window_end",
            "Customers still waiting for an answer whose last message is older than "
            "IGBRIDGE_WINDOW_ESCALATE_AFTER but inside Meta's 24-hour reply window.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.credentials_ok = Gauge(
            "igbridge_credentials_ok",
            "1 while the platform accepts the relay's credentials (Genesys's OAuth client, "
            "Instagram's access token), 0 while it refuses them.",
            ["platform"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.guard = Counter(
            "igbridge_guard",
            "Customer messages checked by the spam rules, by rule and outcome.",
            ["rule", "outcome"],
            registry=r,
        )
        self.loops_detected = Counter(
            "igbridge_loops_detected",
            "Bot-on-bot loops detected (bot replies to that customer are held back).",
            registry=r,
        )
        self.loop_held = Counter(
            "igbridge_loop_held",
            "Bot replies not sent because their customer is in a detected loop.",
            registry=r,
        )
        self.sla_escalations = Counter(
            "igbridge_sla_escalations",
            "Waiting conversations past IGBRIDGE_WINDOW_ESCALATE_AFTER, by outcome.",
            ["outcome"],
            registry=r,
        )

    def exposed(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this process's registry, or every process's values."""
        folder = os.environ.get(MULTIPROCESS_DIR)
        if not folder:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)  # type: ignore[no-untyped-call]
        _add_runtime_collectors(merged)
        if self.delivery_pid is not None:
            # Gone (exited, restarting): the collector then reports nothing.
            ProcessCollector(
                namespace="igbridge_delivery", pid=_constant(self.delivery_pid), registry=merged
            )
        return merged


def _add_runtime_collectors(registry: CollectorRegistry) -> None:
    """This process's CPU, memory, file descriptors and start time, Python's version and
    its garbage collector: the default registry's collectors, shared (they hold no state)."""
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid
