"""The operator's own Prometheus metrics: what only the operator knows, such as when each
channel's Meta token runs out (the alert on it lives in the chart's PrometheusRule)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Gauge

REGISTRY = CollectorRegistry()
TOKEN_EXPIRY = Gauge(
    "igbridge_instagram_token_expiry_timestamp_seconds",
    "When the channel's Meta access token runs out (Unix time), as Meta last said",
    ["namespace", "channel"],
    registry=REGISTRY,
)


def token_expires(namespace: str, channel: str, expires_at: float | None) -> None:
    """Set, or drop when Meta has not said (a stale value would alert on the wrong day)."""
    if expires_at is None:
        forget(namespace, channel)
    else:
        TOKEN_EXPIRY.labels(namespace, channel).set(expires_at)


def forget(namespace: str, channel: str) -> None:
    with contextlib.suppress(KeyError):
        TOKEN_EXPIRY.remove(namespace, channel)
