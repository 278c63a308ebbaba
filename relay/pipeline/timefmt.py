"""Genesys wants ISO 8601 UTC with milliseconds: 2026-01-01T10:00:00.000Z."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
