"""Keeping the Instagram account subscribed to the app's webhooks.

Meta unsubscribes an account after about an hour of failed deliveries; someone then has to
notice and re-subscribe by hand. The operator checks on every resync and re-subscribes, on
the edge the channel's login type uses: the linked Page's with Facebook Login, the
Instagram account's own with Instagram Login."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from .conditions import FALSE, TRUE
from .spec import ChannelSpec

log = logging.getLogger(__name__)

# Instagram Login: the Instagram account's own edge, with Instagram's field names (no
# ``mentions``: that field exists only with Facebook Login).
INSTAGRAM_FIELDS = (
    "messages",
    "messaging_postbacks",
    "message_reactions",
    "messaging_seen",
    "messaging_referral",
    "message_edit",
    "comments",
)


@dataclass(frozen=True, slots=True)
class Subscription:
    """What Meta says after the check: which edge, the fields wanted and those it reports."""

    node: str  # "Page 1020…" or "Instagram account 1784…"
    edge: str  # the edge's URL (never a token)
    wanted: tuple[str, ...]
    subscribed: tuple[str, ...]
    refused: str = ""  # Meta's error message when it refused the subscription

    @property
    def ok(self) -> bool:
        return not self.refused and set(self.wanted) <= set(self.subscribed)

    def condition(self) -> tuple[str, str, str]:
        """``WebhookSubscribed``'s status, reason and message."""
        if self.ok:
            return TRUE, "Subscribed", self.describe()
        return FALSE, "SubscribeFailed", self.describe()

    def describe(self) -> str:
        """The condition's message: which edge and fields, or why not."""
        where = f"{self.node} via {self.edge}"
        if self.ok:
            return f"{where}: {', '.join(self.subscribed)}"
        missing = sorted(set(self.wanted) - set(self.subscribed))
        why = f"Meta refused: {self.refused}" if self.refused else "Meta does not report them"
        return f"{where}: not subscribed to {', '.join(missing)} ({why})"


def target(spec: ChannelSpec) -> tuple[str, str, tuple[str, ...]]:
    """(node, edge URL, fields) for the channel's login type.

    Facebook Login subscribes the Page linked to the account with Page field names (the
    Instagram fields are chosen in the App Dashboard); Instagram Login subscribes the
    Instagram account with Instagram field names."""
    ig = spec.instagram
    base = f"{ig.graph_url}/{ig.api_version}"
    if ig.login == "facebook":
        page = ig.page_id or ""
        return f"Page {page}", f"{base}/{page}/subscribed_apps", ig.page_subscribed_fields
    return (
        f"Instagram account {ig.account_id}",
        f"{base}/{ig.account_id}/subscribed_apps",
        INSTAGRAM_FIELDS,
    )


def _fields(body: Any) -> tuple[str, ...]:
    # Every app subscribed to the node is listed; without our app id we cannot tell ours
    # apart, so the union is what counts.
    found: list[str] = []
    data = body.get("data") if isinstance(body, dict) else None
    for app in data if isinstance(data, list) else []:
        for field in (app.get("subscribed_fields") if isinstance(app, dict) else None) or []:
            if isinstance(field, str) and field not in found:
                found.append(field)
    return tuple(found)


def _graph_error(resp: httpx.Response) -> str:
    try:
        error = resp.json().get("error") or {}
    except ValueError:
        return f"HTTP {resp.status_code}"
    code = error.get("code")
    return f"{error.get('message') or resp.reason_phrase} (code {code}, HTTP {resp.status_code})"


class SubscriptionRefused(Exception):
    """Meta answered the subscription check with an error of its own (a 4xx)."""


async def _read(http: httpx.AsyncClient, edge: str, headers: dict[str, str]) -> tuple[str, ...]:
    current = await http.get(edge, headers=headers, timeout=10.0)
    if current.status_code >= 500:
        current.raise_for_status()  # Meta down: no verdict on the subscription
    if current.status_code != 200:
        raise SubscriptionRefused(_graph_error(current))
    return _fields(current.json())


async def ensure_subscribed(
    http: httpx.AsyncClient, spec: ChannelSpec, access_token: str
) -> Subscription:
    """Subscribe the login's edge to every field it needs when Meta does not report them,
    then read the edge back so the result says what Meta holds, not what was asked.

    ``http`` is the operator's shared client: a client per call would build a TLS context
    each time, which dominated the operator's CPU with hundreds of channels."""
    node, edge, wanted = target(spec)
    headers = {"Authorization": f"Bearer {access_token}"}
    try:
        subscribed = await _read(http, edge, headers)
    except SubscriptionRefused as exc:
        return Subscription(node, edge, wanted, (), str(exc))
    if set(wanted) <= set(subscribed):
        return Subscription(node, edge, wanted, subscribed)
    log.warning(
        "webhooks not subscribed: subscribing",
        extra={"node": node, "missing": sorted(set(wanted) - set(subscribed))},
    )
    # Meta does not say whether a POST replaces the fields or adds to them: send what is
    # wanted and what is there, so either way nothing already subscribed is lost.
    fields = (*wanted, *(f for f in subscribed if f not in wanted))
    done = await http.post(
        edge, params={"subscribed_fields": ",".join(fields)}, headers=headers, timeout=10.0
    )
    if done.status_code >= 500:
        done.raise_for_status()
    if done.status_code != 200:
        refused = _graph_error(done)
        log.warning("meta refused the webhook subscription", extra={"node": node, "why": refused})
        return Subscription(node, edge, wanted, subscribed, refused)
    try:
        subscribed = await _read(http, edge, headers)
    except SubscriptionRefused as exc:
        return Subscription(node, edge, wanted, subscribed, str(exc))
    return Subscription(node, edge, wanted, subscribed)
