"""What the Genesys simulator accepts on the routes the relay and the operator call.

Genesys's own API definition, through its SDK (genesys_schema.py), judges every body's
shape: fields, types, enums, required fields. What the definition cannot say (a message
needs text or content, a priority's range, the signing secret's length) is checked here,
as Genesys's docs describe it. Each check returns the reason Genesys would answer 400
with, or None.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from .genesys_schema import violations

# The SDK model each route's body is (the SDK API method's ``body`` parameter).
MESSAGE = "OpenInboundNormalizedMessage"
STRUCTURED_RESPONSE = "OpenInboundStructuredResponseMessage"
RECEIPT = "OpenInboundNormalizedReceipt"
EVENT = "OpenInboundNormalizedEvent"
INTEGRATION_CREATE = "OpenIntegrationRequest"
INTEGRATION_UPDATE = "OpenIntegrationUpdateRequest"
RECIPIENT = "RecipientRequest"
ROUTING = "RoutingConversationAttributesRequest"

PRIORITY_LIMIT = 25_000_000
SECRET_FIELD = "outboundNotificationWebhookSignatureSecretToken"  # noqa: S105 (a field name)
SHOWN_VIOLATIONS = 5


def genesys_error(status: int, message: str, code: str = "bad.request") -> JSONResponse:
    """Genesys's error body: ``{"message", "code", "status"}``."""
    return JSONResponse({"message": message, "code": code, "status": status}, status_code=status)


def schema_problem(model: str, body: Any) -> str | None:
    """The definition's verdict: every violation (the first few), or None."""
    found = violations(model, body)
    if not found:
        return None
    more = len(found) - SHOWN_VIOLATIONS
    shown = "; ".join(found[:SHOWN_VIOLATIONS])
    return f"{shown}; and {more} more" if more > 0 else shown


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def _sender_problem(channel: dict[str, Any], role: str) -> str | None:
    if _blank(channel[role]["id"]):
        return f"channel.{role}.id must not be empty"
    return None


def validate_inbound_message(body: Any) -> str | None:
    """``…/inbound/open/message``."""
    top_meta = body.get("metadata") if isinstance(body, dict) else None
    if isinstance(top_meta, dict) and "customAttributes" in top_meta:
        # Documented as refused: custom attributes belong to the channel's metadata.
        return "customAttributes belong in channel.metadata, not top-level metadata"
    problem = schema_problem(MESSAGE, body)
    if problem:
        return problem
    if not body.get("text") and not body.get("content"):
        return "a message needs text or content"
    for i, item in enumerate(body.get("content") or ()):
        att = item.get("attachment")
        if att is None:
            return f"content[{i}]: an attachment is required"
        if _blank(att["url"]):
            return f"content[{i}].attachment.url must not be empty"
        major, _, minor = att["mime"].partition("/")
        if not major or not minor:
            return f"content[{i}].attachment.mime must be a media type such as image/jpeg"
    return _sender_problem(body["channel"], "from")


def validate_structured_response(body: Any) -> str | None:
    """``…/inbound/open/structured/response``: a quick-reply or button answer."""
    problem = schema_problem(STRUCTURED_RESPONSE, body)
    if problem:
        return problem
    if _blank(body["originatingMessageId"]):
        return "originatingMessageId must name the message that offered the buttons"
    return _sender_problem(body["channel"], "from")


def validate_receipt(body: Any) -> str | None:
    """``…/inbound/open/receipt``: the fate of an outbound message."""
    problem = schema_problem(RECEIPT, body)
    if problem:
        return problem
    if _blank(body["id"]):
        return "id (the outbound message's id) must not be empty"
    return _sender_problem(body["channel"], "to")


def validate_event(body: Any) -> str | None:
    """``…/inbound/open/event``: for example the customer typing."""
    problem = schema_problem(EVENT, body)
    if problem:
        return problem
    if not body["events"]:
        return "events must not be empty"
    return _sender_problem(body["channel"], "from")


def _integration_fields(body: dict[str, Any]) -> str | None:
    if "name" in body and _blank(body["name"]):
        return "name must not be empty"
    url = body.get("outboundNotificationWebhookUrl")
    if url is not None and not url.startswith("https://"):
        return "outboundNotificationWebhookUrl must be an https URL"
    token = body.get(SECRET_FIELD)
    if token is not None and len(token) <= 15:
        return "the signature secret token must be longer than 15 characters"
    return None


def validate_integration_create(body: Any) -> str | None:
    """``POST …/messaging/integrations/open``."""
    return schema_problem(INTEGRATION_CREATE, body) or _integration_fields(body)


def validate_integration_update(body: Any) -> str | None:
    """``PATCH …/messaging/integrations/open/{id}`` (the definition requires ``name``)."""
    return schema_problem(INTEGRATION_UPDATE, body) or _integration_fields(body)


def validate_recipient(body: Any) -> str | None:
    """``PUT /api/v2/routing/message/recipients/{id}``: attaching an inbound flow."""
    problem = schema_problem(RECIPIENT, body)
    if problem:
        return problem
    flow_id = (body.get("flow") or {}).get("id")
    if not flow_id or _blank(flow_id):
        # Valid for the definition, but attaches nothing: the operator never means that.
        return "flow.id is required"
    return None


def validate_routing(body: Any) -> str | None:
    """``PATCH /api/v2/routing/conversations/{id}``."""
    problem = schema_problem(ROUTING, body)
    if problem:
        return problem
    priority = body.get("priority")
    if priority is not None and not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
        return "priority must be within ±25,000,000"
    return None
