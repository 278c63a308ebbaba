"""The operator's own Prometheus metrics: what only the operator knows, such as when each
channel's Meta token runs out, and how its reconciles go (the alerts on them live in the
chart's PrometheusRule), and the usual process and Python series (CPU, memory, version)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from igbridge.relay.version import VERSION

from .problems import RetryLater, SpecProblem

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)  # stateless: shared with the default registry
BUILD_INFO = Gauge(
    "igbridge_build_info",
    "Always 1; the version label says which igbridge this operator runs.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(VERSION).set(1)
LEADER = Gauge(
    "igbridge_operator_leader",
    "1 while this replica acts (it holds the Lease, or runs without highAvailability), "
    "0 while it stands by.",
    registry=REGISTRY,
)
LEADER.set(1)  # without a Lease the one replica acts; a standby sets 0 until it leads
TOKEN_EXPIRY = Gauge(
    "igbridge_instagram_token_expiry_timestamp_seconds",
    "When the channel's Meta access token runs out (Unix time), as Meta last said",
    ["namespace", "channel"],
    registry=REGISTRY,
)
RECONCILES = Counter(
    "igbridge_operator_reconciles",
    "Handler runs for InstagramChannels, by handler and result (ok, retry: something "
    "outside was not ready, spec_problem: the channel or a Secret must change, error: a bug, "
    "cancelled: the operator stopped).",
    ["handler", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "igbridge_operator_reconcile_duration_seconds",
    "How long one handler run took, by handler.",
    ["handler"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
ERRORS = Counter(
    "igbridge_operator_errors",
    "Handler runs that did not finish, by reason (a condition reason such as TokenInvalid, "
    "RetryLater, or the exception's type for a bug).",
    ["reason"],
    registry=REGISTRY,
)


def outcome(exc: BaseException | None) -> tuple[str, str | None]:
    """(result, error reason) of a handler run that ended with ``exc`` (None: it finished).
    Reasons come from code (condition reasons, class names), so their number is bounded."""
    if exc is None:
        return "ok", None
    if not isinstance(exc, Exception):
        return "cancelled", None  # the operator is stopping: neither a success nor a fault
    if isinstance(exc, SpecProblem):
        return "spec_problem", exc.reason
    if isinstance(exc, RetryLater):
        return "retry", "RetryLater"
    return "error", type(exc).__name__


@contextlib.contextmanager
def reconciling(handler: str) -> Iterator[None]:
    """Count and time one handler run; the exception passes on unchanged."""
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        result, reason = outcome(error)
        RECONCILES.labels(handler, result).inc()
        RECONCILE_SECONDS.labels(handler).observe(time.perf_counter() - started)
        if reason is not None:
            ERRORS.labels(reason).inc()


def token_expires(namespace: str, channel: str, expires_at: float | None) -> None:
    """Set, or drop when Meta has not said (a stale value would alert on the wrong day)."""
    if expires_at is None:
        forget(namespace, channel)
    else:
        TOKEN_EXPIRY.labels(namespace, channel).set(expires_at)


def forget(namespace: str, channel: str) -> None:
    with contextlib.suppress(KeyError):
        TOKEN_EXPIRY.remove(namespace, channel)
