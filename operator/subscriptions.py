"""Keeping the Instagram account subscribed to the app's webhooks.

Meta unsubscribes an account after about an hour of failed deliveries; someone then has to
notice and re-subscribe by hand. The operator checks on every resync and re-subscribes."""

from __future__ import annotations

import logging

import httpx

from .spec import ChannelSpec

log = logging.getLogger(__name__)

FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_reactions",
    "messaging_seen",
    "messaging_referral",
    "comments",
    "mentions",
)


async def ensure_subscribed(http: httpx.AsyncClient, spec: ChannelSpec, access_token: str) -> bool:
    """True when the account is subscribed to every field (re-subscribing if needed).

    ``http`` is the operator's shared client: a client per call would build a TLS context
    each time, which dominated the operator's CPU with hundreds of channels."""
    ig = spec.instagram
    url = f"{ig.graph_url.rstrip('/')}/{ig.api_version}/{ig.account_id}/subscribed_apps"
    headers = {"Authorization": f"Bearer {access_token}"}
    current = await http.get(url, headers=headers, timeout=10.0)
    current.raise_for_status()
    subscribed: set[str] = set()
    for app in current.json().get("data") or []:
        subscribed.update(app.get("subscribed_fields") or [])
    if subscribed.issuperset(FIELDS):
        return True
    log.warning(
        "instagram account not subscribed to webhooks: subscribing",
        extra={"account": ig.account_id, "missing": sorted(set(FIELDS) - subscribed)},
    )
    done = await http.post(
        url, params={"subscribed_fields": ",".join(FIELDS)}, headers=headers, timeout=10.0
    )
    if done.status_code != 200:
        return False
    return bool(done.json().get("success"))
