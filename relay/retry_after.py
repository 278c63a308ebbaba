"""Reading ``Retry-After``, which both platforms send with 429 and 503 answers."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

# A longer wait is more likely a misconfigured proxy than advice worth following.
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (delta or HTTP date), bounded; None if absent.

    ``headers`` must look names up case-insensitively, as aiohttp's do."""
    raw = headers.get("Retry-After")
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
