"""Retry policy for both directions: delays, how long to keep trying, and the labels
failures are counted under.

The worker records the next attempt's time in the store instead of sleeping in a
retry loop (a restart must not forget a pending retry), so tenacity/stamina's
in-process loops do not fit; this is the one formula they would have supplied.
"""

from __future__ import annotations

import random

from ..genesys.errors import TransientError

# Transient failures are retried this long before a message is dead-lettered: past Meta's
# 24-hour reply window an answer cannot reach the customer anyway.
MAX_RETRY_AGE_SECONDS = 24 * 3600.0
# Credentials fixed by a person take a while; don't hammer the token endpoint meanwhile.
AUTH_RETRY_SECONDS = 30.0
# A store outage inside a delivery is usually a blip (a Redis failover, a busy disk).
STORE_RETRY_SECONDS = 1.0
# A handler that raised (a bug, or input nobody foresaw) is tried this often, then the job
# is dead-lettered with the exception so the customer's later messages flow on.
HANDLER_ERROR_ATTEMPTS = 3
HANDLER_ERROR_RETRY_SECONDS = 30.0


def backoff_delay(attempts: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2**attempts."""
    ceiling = min(cap, base * 2.0 ** min(attempts, 30))
    jitter: float = random.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def transient_reason(exc: TransientError) -> str:
    """The metric label of a retried Genesys failure."""
    if exc.status == 429:
        return "429"
    if exc.status is not None and exc.status >= 500:
        return "5xx"
    if exc.status is not None:
        return str(exc.status)
    return "network"
