"""A Genesys Cloud simulator: OAuth, Open Messaging inbound, receipts, routing, integrations.

It follows reference/genesys.md: it accepts what Genesys documents and answers 400 with
a reason for what Genesys documents as rejected, so the relay is tested against the
contract rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultMiddleware, FaultPlan, fault_control

MEDIA_TYPES = {"Image", "Video", "Audio", "File", "Link"}
INBOUND = "/api/v2/conversations/messages/{integration_id}/inbound/open/{kind}"


@dataclass
class RecordedMessage:
    integration_id: str
    body: dict[str, Any]
    raw: bytes
    content_type: str
    conversation_id: str
    received_at: float = field(default_factory=time.time)
    endpoint: str = "message"  # or "structured/response" for quick-reply and button answers

    @property
    def text(self) -> str | None:
        text = self.body.get("text")
        return text if isinstance(text, str) else None

    @property
    def message_id(self) -> str:
        return str(self.body["channel"]["messageId"])

    @property
    def attributes(self) -> dict[str, str]:
        meta = self.body["channel"].get("metadata") or {}
        attrs = meta.get("customAttributes") or {}
        return dict(attrs)


def _error(status: int, message: str, code: str = "bad.request") -> JSONResponse:
    return JSONResponse({"message": message, "code": code, "status": status}, status_code=status)


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_inbound_message(body: Any) -> str | None:
    """The reason Genesys would answer 400, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if isinstance(body.get("metadata"), dict) and "customAttributes" in body["metadata"]:
        return "customAttributes belong in channel.metadata, not top-level metadata"
    channel = body.get("channel")
    if not isinstance(channel, dict):
        return "channel is required"
    if not isinstance(channel.get("messageId"), str) or not channel["messageId"]:
        return "channel.messageId is required"
    sender = channel.get("from")
    if not isinstance(sender, dict) or not sender.get("id") or not sender.get("idType"):
        return "channel.from.id and channel.from.idType are required"
    if not _iso(channel.get("time")):
        return "channel.time must be an ISO-8601 date-time"
    meta = channel.get("metadata")
    if meta is not None:
        attrs = meta.get("customAttributes") if isinstance(meta, dict) else None
        if attrs is not None and (
            not isinstance(attrs, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items())
        ):
            return "channel.metadata.customAttributes must map strings to strings"
    content = body.get("content")
    if not body.get("text") and not content:
        return "a message needs text or content"
    for item in content or []:
        if isinstance(item, dict) and item.get("contentType") == "ButtonResponse":
            answer = item.get("buttonResponse")
            if not isinstance(answer, dict) or answer.get("type") not in ("QuickReply", "Button"):
                return "buttonResponse.type must be QuickReply or Button"
            continue
        att = item.get("attachment") if isinstance(item, dict) else None
        if not isinstance(att, dict) or att.get("mediaType") not in MEDIA_TYPES:
            return "attachment.mediaType must be one of Image, Video, Audio, File, Link"
        if not isinstance(att.get("url"), str) or not att["url"]:
            return "attachment.url is required"
    return None


def sign_genesys(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


class GenesysSimulator:
    def __init__(
        self,
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 (simulator only)
        integration_ids: tuple[str, ...] = ("sandbox-integration",),
        *,
        token_ttl: int = 86400,
        create_delay: float = 0.2,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.integration_ids = set(integration_ids)
        self.token_ttl = token_ttl
        self.create_delay = create_delay
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._conversations: dict[tuple[str, str], str] = {}
        self.token_grants = 0
        self.messages: list[RecordedMessage] = []
        self.receipts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.structured: list[dict[str, Any]] = []
        self.priority_changes: list[tuple[str, int]] = []
        self.integrations: dict[str, dict[str, Any]] = {}
        self.flow_assignments: dict[str, str] = {}
        self.app = self._build_app()

    # -- test-side controls -------------------------------------------------------
    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def end_conversation(self, from_id: str) -> None:
        with self._lock:
            for key in [k for k in self._conversations if k[1] == from_id]:
                del self._conversations[key]

    def snapshot(self) -> list[RecordedMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[RecordedMessage]:
        self.wait_for(lambda: len(self.messages) >= count, timeout)
        return self.snapshot()

    # -- routes ---------------------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._tokens.get(header[len("Bearer ") :])
        return expiry is not None and expiry > time.time()

    async def _token(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        try:
            given = base64.b64decode(header.removeprefix("Basic ")).decode()
        except ValueError:
            given = ""
        if given != f"{self.client_id}:{self.client_secret}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl
            self.token_grants += 1
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl}
        )

    async def _read_json(self, request: Request) -> tuple[Any, bytes] | Response:
        if not self._authorised(request):
            return _error(401, "authentication required", "authentication.required")
        if request.path_params["integration_id"] not in self.integration_ids:
            return _error(404, "integration not found", "not.found")
        raw = await request.body()
        try:
            return json.loads(raw.decode("utf-8")), raw
        except (UnicodeDecodeError, ValueError):
            return _error(400, "body is not valid UTF-8 JSON")

    def _record(self, request: Request, body: dict[str, Any], raw: bytes, endpoint: str) -> str:
        """Keep a customer message as received; returns its (stable) conversation id."""
        integration = request.path_params["integration_id"]
        from_id = str(body["channel"]["from"]["id"])
        content_type = request.headers.get("content-type", "")
        with self._lock:
            conv = self._conversations.setdefault((integration, from_id), str(uuid.uuid4()))
            self.messages.append(
                RecordedMessage(integration, body, raw, content_type, conv, endpoint=endpoint)
            )
        return conv

    async def _inbound_message(self, request: Request) -> Response:
        read = await self._read_json(request)
        if isinstance(read, Response):
            return read
        body, raw = read
        reason = validate_inbound_message(body)
        if reason:
            return _error(400, reason)
        integration = request.path_params["integration_id"]
        conv = self._record(request, body, raw, "message")
        answer: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "channel": {"messageId": body["channel"]["messageId"], "id": integration},
            "direction": "Inbound",
        }
        if request.query_params.get("prefetchConversationId") == "true":
            answer["conversationId"] = conv
        return JSONResponse(answer)

    async def _inbound_other(self, request: Request) -> Response:
        read = await self._read_json(request)
        if isinstance(read, Response):
            return read
        body, raw = read
        kind = request.path_params["kind"]
        if not isinstance(body, dict) or not isinstance(body.get("channel"), dict):
            return _error(400, "channel is required")
        if kind == "receipt":
            if body.get("status") not in ("Delivered", "Failed", "Read", "Sent", "Published"):
                return _error(400, "receipt status is invalid")
            if not body.get("id"):
                return _error(400, "receipt id (the outbound message id) is required")
            target = self.receipts
        elif kind == "event":
            target = self.events
        elif kind == "structured/response":
            reason = validate_inbound_message(body)
            if reason:
                return _error(400, reason)
            self._record(request, body, raw, kind)
            with self._lock:
                self.structured.append(body)
            return JSONResponse({"id": uuid.uuid4().hex})
        else:
            return _error(404, "not found", "not.found")
        with self._lock:
            target.append(body)
        return JSONResponse({"id": uuid.uuid4().hex})

    async def _routing_priority(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "authentication required", "authentication.required")
        conv = request.path_params["conversation_id"]
        body = await request.json()
        priority = body.get("priority") if isinstance(body, dict) else None
        if not isinstance(priority, int) or not -25_000_000 <= priority <= 25_000_000:
            return _error(400, "priority must be an integer within ±25,000,000")
        with self._lock:
            if conv not in self._conversations.values():
                return _error(404, "conversation not found", "not.found")
            self.priority_changes.append((conv, priority))
        return JSONResponse({"priority": priority})

    async def _integrations(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "authentication required", "authentication.required")
        if request.method == "GET":
            with self._lock:
                entities = [self._settled(i) for i in self.integrations.values()]
            return JSONResponse({"entities": entities, "total": len(entities)})
        body = await request.json()
        if not isinstance(body, dict) or not body.get("name"):
            return _error(400, "name is required")
        url = body.get("outboundNotificationWebhookUrl")
        if not isinstance(url, str) or not url.startswith("https://"):
            return _error(400, "outboundNotificationWebhookUrl must be an https URL")
        token = body.get("outboundNotificationWebhookSignatureSecretToken")
        if not isinstance(token, str) or len(token) <= 15:
            return _error(400, "signature secret token must be more than 15 characters")
        integration = {
            **body,
            "id": str(uuid.uuid4()),
            "recipient": {"id": str(uuid.uuid4())},
            "createStatus": "Initiated",
            "_created": time.time(),
        }
        with self._lock:
            self.integrations[integration["id"]] = integration
            self.integration_ids.add(integration["id"])
        return JSONResponse(self._settled(integration))

    def _settled(self, integration: dict[str, Any]) -> dict[str, Any]:
        if integration["createStatus"] == "Initiated" and (
            time.time() - integration["_created"] >= self.create_delay
        ):
            integration["createStatus"] = "Completed"
        return {k: v for k, v in integration.items() if not k.startswith("_")}

    async def _integration(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "authentication required", "authentication.required")
        iid = request.path_params["iid"]
        with self._lock:
            integration = self.integrations.get(iid)
            if integration is None:
                return _error(404, "integration not found", "not.found")
            if request.method == "DELETE":
                del self.integrations[iid]
                self.integration_ids.discard(iid)
                return Response(status_code=204)
        if request.method == "PATCH":
            patch = await request.json()
            with self._lock:
                integration.update({k: v for k, v in patch.items() if k not in ("id", "recipient")})
        return JSONResponse(self._settled(integration))

    async def _recipient_flow(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401, "authentication required", "authentication.required")
        body = await request.json()
        flow = body.get("flow", {}).get("id") if isinstance(body, dict) else None
        if not flow:
            return _error(400, "flow.id is required")
        with self._lock:
            self.flow_assignments[request.path_params["rid"]] = flow
        return JSONResponse({"id": request.path_params["rid"], "flow": {"id": flow}})

    async def _recorded(self, _: Request) -> Response:
        return JSONResponse(
            [
                {"body": m.body, "conversationId": m.conversation_id, "contentType": m.content_type}
                for m in self.snapshot()
            ]
        )

    async def _faults(self, request: Request) -> Response:
        return await fault_control(request, self.faults)

    def _build_app(self) -> Starlette:
        base = "/api/v2/conversations/messages/{integration_id}/inbound/open"
        integrations = "/api/v2/conversations/messaging/integrations/open"
        return Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route(f"{base}/message", self._inbound_message, methods=["POST"]),
                Route(f"{base}/{{kind:path}}", self._inbound_other, methods=["POST"]),
                Route(
                    "/api/v2/routing/conversations/{conversation_id}",
                    self._routing_priority,
                    methods=["PATCH"],
                ),
                Route(integrations, self._integrations, methods=["GET", "POST"]),
                Route(
                    integrations + "/{iid}", self._integration, methods=["GET", "PATCH", "DELETE"]
                ),
                Route(
                    "/api/v2/routing/message/recipients/{rid}",
                    self._recipient_flow,
                    methods=["PUT"],
                ),
                Route("/_sandbox/messages", self._recorded, methods=["GET"]),
                Route("/_sandbox/faults", self._faults, methods=["POST", "DELETE"]),
            ],
            middleware=[Middleware(FaultMiddleware, plan=self.faults)],
        )

    # -- the agent's side: outbound webhooks to the relay --------------------------------
    def build_agent_message(
        self, to_id: str, text: str, integration_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        iid = integration_id or next(iter(self.integration_ids))
        message_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "id": message_id,
            "conversationId": str(uuid.uuid4()),
            "direction": "Outbound",
            "originatingEntity": "Human",
            "type": "Text",
            "channel": {
                "id": iid,
                "platform": "Open",
                "type": "Private",
                "to": {"id": to_id, "idType": "Opaque"},
                "from": {"id": iid, "idType": "Opaque", "nickname": "Agent"},
                "time": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                "messageId": message_id,
            },
            "text": text,
        }
        body.update(extra)
        return body

    @staticmethod
    def post_agent_message(url: str, body: dict[str, Any], secret: str) -> httpx.Response:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_genesys(raw, secret),
        }
        return httpx.post(url, content=raw, headers=headers, timeout=15)
