"""Erasure of one customer: what ``igbridge-relay forget`` and Meta's data-deletion
callback share. The store finds the customer wherever they are stored
(``Store.forget_customer``); this checks the id and logs the outcome without it."""

from __future__ import annotations

import logging
import re

from .store.base import FORGOTTEN_KINDS, Store

log = logging.getLogger(__name__)

# Instagram-scoped ids are long decimal numbers; anything else, or something short enough
# to match inside other ids (the store matches by substring), is refused.
CUSTOMER_ID = re.compile(r"[0-9]{6,32}")


def valid_customer_id(value: str) -> bool:
    return CUSTOMER_ID.fullmatch(value) is not None


async def erase(store: Store, igsid: str, *, why: str) -> dict[str, int]:
    """Forget everything stored about the customer; counts per kind, in report order.
    The log line names the reason and the counts, never the id (logs outlive erasure)."""
    if not valid_customer_id(igsid):
        raise ValueError("a customer id is 6 to 32 digits")
    removed = await store.forget_customer(igsid)
    counts = {kind: removed.get(kind, 0) for kind in FORGOTTEN_KINDS}
    log.info("customer data erased", extra={"why": why, "removed": counts})
    return counts
