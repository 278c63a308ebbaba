"""Retry delays for durable, store-scheduled retries.

The worker records the next attempt's time in the store instead of sleeping in a
retry loop (a restart must not forget a pending retry), so tenacity/stamina's
in-process loops do not fit; this is the one formula they would have supplied.
"""

from __future__ import annotations

import random


def backoff_delay(attempts: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with "equal jitter": between half and all of base * 2**attempts."""
    ceiling = min(cap, base * 2.0 ** min(attempts, 30))
    jitter: float = random.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter
