"""Small HTTP helpers shared by the Genesys clients: classifying statuses, error reasons."""

from __future__ import annotations

from ..http import Answer


def classify_response(status: int) -> str:
    """``ok``, ``transient`` (retry later) or ``permanent`` (retrying cannot help)."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "transient"
    return "permanent"


def error_reason(resp: Answer, limit: int = 300) -> str:
    """A short, loggable reason from a Genesys error body (its ``message``), else the status."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return f"HTTP {resp.status}: {body['message'][:limit]}"
    return f"HTTP {resp.status}"
