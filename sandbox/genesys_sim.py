"""A Genesys Cloud simulator: OAuth, Open Messaging inbound, receipts, routing, integrations.

Every request body is held to Genesys's own API definition (its SDK's models, see
genesys_schema.py) plus the rules its docs add (genesys_contract.py): what Genesys would
refuse gets a 400 naming the violation. State is guarded by one lock: the app runs on a
uvicorn thread while tests read from theirs.

Observation for other processes (benchmarks): ``GET /_sandbox/messages[?since=N]``;
faults: ``POST|DELETE /_sandbox/faults`` (see faults.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultPlan, app_with_faults
from .genesys_agent import build_agent_message, post_agent_message, sign_genesys, typing_event
from .genesys_contract import (
    genesys_error,
    validate_event,
    validate_inbound_message,
    validate_receipt,
    validate_routing,
    validate_structured_response,
)
from .genesys_integrations import IntegrationRegistry
from .genesys_schema import sdk

__all__ = ["GenesysSimulator", "RecordedMessage", "sign_genesys"]

INBOUND = "/api/v2/conversations/messages/{integration_id}/inbound/open"


@dataclass
class RecordedMessage:
    """One accepted customer message, as it arrived."""

    integration_id: str
    body: dict[str, Any]  # parsed
    raw: bytes  # the exact bytes received
    content_type: str  # the request's Content-Type header
    conversation_id: str
    received_at: float = field(default_factory=time.time)
    endpoint: str = "message"  # or "structured/response" for quick-reply and button answers

    @property
    def text(self) -> str | None:
        text = self.body.get("text")
        return text if isinstance(text, str) else None

    @property
    def message_id(self) -> str:
        return str(self.body["channel"].get("messageId", ""))  # optional for Genesys

    @property
    def from_id(self) -> str:
        return str(self.body["channel"]["from"]["id"])

    @property
    def attributes(self) -> dict[str, str]:
        meta = self.body["channel"].get("metadata") or {}
        return dict(meta.get("customAttributes") or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "integrationId": self.integration_id,
            "endpoint": self.endpoint,
            "body": self.body,
            "conversationId": self.conversation_id,
            "contentType": self.content_type,
            "receivedAt": self.received_at,
        }


class GenesysSimulator:
    def __init__(
        self,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 (simulator only)
        integration_ids: str | Iterable[str] = ("sandbox-integration",),
        *,
        token_ttl: int = 86400,
        create_delay: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        sdk()  # load Genesys's SDK now (seconds), not inside the first request
        self.client_id = client_id
        self.client_secret = client_secret
        ids = [integration_ids] if isinstance(integration_ids, str) else list(integration_ids)
        if not ids:
            raise ValueError("at least one integration id is needed")
        self.integration_ids = ids  # the first is the default one
        self.token_ttl = token_ttl
        self.clock = clock  # seconds; tests may pass a settable one to expire tokens
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token → expiry (clock seconds)
        self._conversations: dict[tuple[str, str], str] = {}  # (integration, from.id) → id
        self.token_grants = 0
        self.token_requests = 0  # granted or refused
        self.messages: list[RecordedMessage] = []
        self.receipts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.structured: list[dict[str, Any]] = []
        self.priority_changes: list[tuple[str, int]] = []  # (conversation id, priority)
        self.registry = IntegrationRegistry(
            authorised=self._authorised,
            on_change=self._integration_changed,
            clock=clock,
            create_delay=create_delay,
        )
        self.app = self._build_app()

    # -- test-side controls and observation ---------------------------------------------
    @property
    def default_integration_id(self) -> str:
        return self.integration_ids[0]

    @property
    def integrations(self) -> dict[str, dict[str, Any]]:
        return self.registry.integrations

    @property
    def flow_assignments(self) -> dict[str, str]:
        return self.registry.flow_assignments

    def revoke_tokens(self) -> None:
        """Every issued token stops working (the client must fetch a new one on 401)."""
        with self._lock:
            self._tokens.clear()

    def end_conversation(self, from_id: str) -> None:
        """The customer's conversations end; their next message starts a new one."""
        with self._lock:
            for key in [k for k in self._conversations if k[1] == from_id]:
                del self._conversations[key]

    def open_conversation(self, from_id: str, integration_id: str | None = None) -> str:
        """The customer's conversation, started as their first message would start it
        (for a caller that needs one in the queue without sending a message)."""
        with self._lock:
            return self._conversation(integration_id or self.integration_ids[0], from_id)

    def _conversation(self, integration: str, from_id: str) -> str:
        """Under ``_lock``: the customer's conversation on the integration, started if none."""
        return self._conversations.setdefault((integration, from_id), str(uuid.uuid4()))

    def conversation_id(self, from_id: str, integration_id: str | None = None) -> str | None:
        with self._lock:
            return self._conversations.get((integration_id or self.integration_ids[0], from_id))

    def snapshot(self) -> list[RecordedMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(
        self, predicate: Callable[[], bool] | int, timeout: float = 10.0, poll: float = 0.01
    ) -> bool:
        """Poll until ``predicate()`` holds (an int means: that many messages recorded)."""

        def enough() -> bool:
            return len(self.messages) >= predicate if isinstance(predicate, int) else predicate()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if enough():
                return True
            time.sleep(poll)
        return enough()

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[RecordedMessage]:
        """All recorded messages once there are ``count`` (fewer if the timeout passes)."""
        self.wait_for(count, timeout)
        return self.snapshot()

    def _integration_changed(self, integration_id: str, exists: bool) -> None:
        with self._lock:
            if exists and integration_id not in self.integration_ids:
                self.integration_ids.append(integration_id)
            elif not exists and integration_id in self.integration_ids:
                self.integration_ids.remove(integration_id)

    # -- OAuth ------------------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > self.clock()

    def _client_authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.client_id}:{self.client_secret}".encode()
        return hmac.compare_digest(given, expected)

    async def _token(self, request: Request) -> Response:
        with self._lock:
            self.token_requests += 1
        if not self._client_authenticated(request):
            return JSONResponse(
                {"error": "invalid_client", "description": "client authentication failed"},
                status_code=401,
            )
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = self.clock() + self.token_ttl
            self.token_grants += 1
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl}
        )

    # -- Open Messaging inbound ------------------------------------------------------------------
    async def _read_json(self, request: Request) -> tuple[Any, bytes] | Response:
        """Auth, integration and body checks shared by the inbound routes."""
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        with self._lock:
            known = request.path_params["integration_id"] in self.integration_ids
        if not known:
            return genesys_error(404, "integration not found", "not.found")
        raw = await request.body()
        try:
            return json.loads(raw.decode("utf-8")), raw
        except (UnicodeDecodeError, ValueError):
            return genesys_error(400, "body is not valid UTF-8 JSON")

    def _record(self, request: Request, body: dict[str, Any], raw: bytes, endpoint: str) -> str:
        """Keep a customer message as received; returns its (stable) conversation id."""
        integration = request.path_params["integration_id"]
        from_id = str(body["channel"]["from"]["id"])
        content_type = request.headers.get("content-type", "")
        with self._lock:
            conv = self._conversation(integration, from_id)
            self.messages.append(
                RecordedMessage(integration, body, raw, content_type, conv, endpoint=endpoint)
            )
            if endpoint != "message":
                self.structured.append(body)
        return conv

    async def _inbound_message(self, request: Request) -> Response:
        read = await self._read_json(request)
        if isinstance(read, Response):
            return read
        body, raw = read
        reason = validate_inbound_message(body)
        if reason:
            return genesys_error(400, reason)
        conv = self._record(request, body, raw, "message")
        answer: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "channel": {
                **body["channel"],
                "id": request.path_params["integration_id"],
                "platform": "Open",
                "type": "Private",
            },
            "direction": "Inbound",
        }
        if request.query_params.get("prefetchConversationId") == "true":
            answer["conversationId"] = conv
        return JSONResponse(answer)

    async def _structured_response(self, request: Request) -> Response:
        read = await self._read_json(request)
        if isinstance(read, Response):
            return read
        body, raw = read
        reason = validate_structured_response(body)
        if reason:
            return genesys_error(400, reason)
        self._record(request, body, raw, "structured/response")
        return JSONResponse({"id": uuid.uuid4().hex, "direction": "Inbound"})

    async def _receipt_or_event(self, request: Request) -> Response:
        read = await self._read_json(request)
        if isinstance(read, Response):
            return read
        body, _ = read
        is_receipt = request.url.path.endswith("/receipt")
        reason = validate_receipt(body) if is_receipt else validate_event(body)
        if reason:
            return genesys_error(400, reason)
        with self._lock:
            (self.receipts if is_receipt else self.events).append(body)
        return JSONResponse({"id": body.get("id") or uuid.uuid4().hex})

    # -- routing priority ---------------------------------------------------------------------
    async def _routing_priority(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        conv = request.path_params["conversation_id"]
        try:
            body = await request.json()
        except ValueError:
            return genesys_error(400, "body is not valid UTF-8 JSON")
        reason = validate_routing(body)
        if reason:
            return genesys_error(400, reason)
        priority = body.get("priority")
        if priority is None:
            # Valid for Genesys (other attributes), but the relay only ever sets priority.
            return genesys_error(400, "the simulator only changes priority: priority is required")
        with self._lock:
            if conv not in self._conversations.values():
                return genesys_error(404, "conversation not found", "not.found")
            self.priority_changes.append((conv, priority))
        return JSONResponse({"id": conv, "priority": priority})

    # -- app --------------------------------------------------------------------------------
    async def _recorded(self, request: Request) -> Response:
        try:
            since = max(0, int(request.query_params.get("since", "0")))
        except ValueError:
            return genesys_error(400, "since must be an integer")
        return JSONResponse([m.to_json() for m in self.snapshot()[since:]])

    def _build_app(self) -> Starlette:
        return app_with_faults(
            [
                Route("/oauth/token", self._token, methods=["POST"]),
                Route(f"{INBOUND}/message", self._inbound_message, methods=["POST"]),
                Route(f"{INBOUND}/receipt", self._receipt_or_event, methods=["POST"]),
                Route(f"{INBOUND}/event", self._receipt_or_event, methods=["POST"]),
                Route(
                    f"{INBOUND}/structured/response", self._structured_response, methods=["POST"]
                ),
                Route(
                    "/api/v2/routing/conversations/{conversation_id}",
                    self._routing_priority,
                    methods=["PATCH"],
                ),
                *self.registry.routes(),
                Route("/_sandbox/messages", self._recorded, methods=["GET"]),
            ],
            self.faults,
        )

    # -- the agent's side: outbound webhooks to the relay (see genesys_agent.py) -------------
    def build_agent_message(
        self, to_id: str, text: str | None, integration_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """An agent's message to ``to_id``; ``extra`` overrides top-level fields
        (``type="Structured", content=[...]``, ``originatingEntity="Bot"``, ...)."""
        body = build_agent_message(integration_id or self.integration_ids[0], to_id, text)
        body.update(extra)
        return body

    def build_agent_typing(self, to_id: str, on: bool = True) -> dict[str, Any]:
        return build_agent_message(
            self.integration_ids[0], to_id, message_type="Event", events=[typing_event(on)]
        )

    @staticmethod
    def post_agent_message(
        url: str, body: dict[str, Any] | bytes, secret: str, timeout: float = 15.0
    ) -> httpx.Response:
        return post_agent_message(url, body, secret, timeout=timeout)
