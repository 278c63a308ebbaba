"""Small HTTP helpers shared by the Genesys clients: classifying statuses, Retry-After."""

from __future__ import annotations

import email.utils
import time

import httpx

MAX_RETRY_AFTER_SECONDS = 3600.0


def classify_response(status: int) -> str:
    """``ok``, ``transient`` (retry later) or ``permanent`` (retrying cannot help)."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "transient"
    return "permanent"


def retry_after_seconds(resp: httpx.Response) -> float | None:
    """The response's Retry-After in seconds (delta or HTTP date), bounded; None if absent."""
    raw = resp.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def error_reason(resp: httpx.Response, limit: int = 300) -> str:
    """A short, loggable reason from a Genesys error body (its ``message``), else the status."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"HTTP {resp.status_code}: {body['message'][:limit]}"
    return f"HTTP {resp.status_code}"
