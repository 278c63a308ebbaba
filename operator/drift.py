"""What differs between the Genesys integration a channel wants and the one Genesys has,
and so what to repair. Pure: reconcile.py reads the integration (and its recipient) and
sends the repair.

Every field the operator sets is compared on every resync, not only those a spec change
touched: an integration recreated after someone deleted it, or edited in Genesys's admin
UI, must end up whole, inbound flow included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .plan import SIGNING_SECRET, WEBHOOK_URL, DesiredIntegration

SUPPORTED_CONTENT = "supportedContent"
MESSAGING_SETTING = "messagingSetting"


@dataclass(frozen=True, slots=True)
class Repair:
    """``patch``: the integration's fields to PATCH (empty: none); ``flow``: ``(recipient
    id, flow id)`` to attach (None: the right one is there, or none is wanted)."""

    patch: dict[str, Any]
    flow: tuple[str, str] | None = None


def secret_digest(secret: str) -> str:
    """What the status keeps of the signing secret last sent (never the secret)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def ref_id(value: object) -> str | None:
    """The ``id`` of a Genesys reference (``{"id": ..., "name": ...}``), if any."""
    found = value.get("id") if isinstance(value, Mapping) else None
    return str(found) if found else None


def integration_repair(
    desired: DesiredIntegration,
    actual: Mapping[str, Any],
    recipient_flow: str | None,
    sent_secret_digest: object = None,
) -> Repair:
    """The repair that makes ``actual`` (the integration as Genesys returns it) match.

    ``recipient_flow``: the flow id on its recipient as Genesys has it (None: none).
    ``sent_secret_digest``: ``secret_digest`` of the signing secret last sent to Genesys
    (from the status). Genesys does not return the secret, so a regenerated one is seen
    only through that; it also goes along with every other repair. A content profile or
    messaging setting the spec leaves out is Genesys's business (it applies defaults)."""
    patch: dict[str, Any] = {}
    if actual.get(WEBHOOK_URL) != desired.webhook_url:
        patch[WEBHOOK_URL] = desired.webhook_url
    if desired.enforce_name and actual.get("name") != desired.name:
        patch["name"] = desired.name
    content = desired.supported_content_id
    if content and ref_id(actual.get(SUPPORTED_CONTENT)) != content:
        patch[SUPPORTED_CONTENT] = {"id": content}
    setting = desired.messaging_setting_id
    if setting and ref_id(actual.get(MESSAGING_SETTING)) != setting:
        patch[MESSAGING_SETTING] = {"id": setting}
    secret = desired.signing_secret
    if (
        patch
        or actual.get(SIGNING_SECRET) not in (None, secret)
        or sent_secret_digest != secret_digest(secret)
    ):
        patch[SIGNING_SECRET] = secret
    flow, recipient = desired.inbound_flow_id, ref_id(actual.get("recipient"))
    attach = (recipient, flow) if flow and recipient and recipient_flow != flow else None
    return Repair(patch, attach)
