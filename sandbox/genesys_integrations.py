"""Open Messaging integration provisioning in the Genesys simulator (for the operator).

Creation is asynchronous like Genesys's: ``createStatus`` reads ``Initiated`` until
``create_delay`` seconds have passed, then ``Completed``. The signing secret is
write-only: it is kept (tests may read it) but never returned.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .genesys_contract import genesys_error

BASE = "/api/v2/conversations/messaging/integrations/open"
SECRET_FIELD = "outboundNotificationWebhookSignatureSecretToken"  # noqa: S105 (a field name)
WRITABLE = frozenset(
    {
        "name",
        "outboundNotificationWebhookUrl",
        SECRET_FIELD,
        "webhookHeaders",
        "supportedContent",
        "messagingSetting",
    }
)


def _field_problem(fields: dict[str, Any]) -> str | None:
    unknown = sorted(set(fields) - WRITABLE)
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    if "name" in fields and (not isinstance(fields["name"], str) or not fields["name"]):
        return "name is required"
    url = fields.get("outboundNotificationWebhookUrl", "https://")
    if not isinstance(url, str) or not url.startswith("https://"):
        return "outboundNotificationWebhookUrl must be an https URL"
    token = fields.get(SECRET_FIELD, "x" * 16)
    if not isinstance(token, str) or len(token) <= 15:
        return "the signature secret token must be more than 15 characters"
    return None


class IntegrationRegistry:
    """Integrations and recipient flows; ``on_change(id, exists)`` keeps inbound in step."""

    def __init__(
        self,
        *,
        authorised: Callable[[Request], bool],
        on_change: Callable[[str, bool], None],
        clock: Callable[[], float],
        create_delay: float,
    ) -> None:
        self._authorised = authorised
        self._on_change = on_change
        self._clock = clock
        self.create_delay = create_delay
        self._lock = threading.Lock()
        self.integrations: dict[str, dict[str, Any]] = {}  # as stored, secret included
        self._created_at: dict[str, float] = {}
        self.flow_assignments: dict[str, str] = {}  # recipient id → flow id

    def _public(self, iid: str) -> dict[str, Any]:
        """The integration as Genesys returns it (caller holds the lock)."""
        stored = self.integrations[iid]
        if stored["createStatus"] == "Initiated" and (
            self._clock() - self._created_at[iid] >= self.create_delay
        ):
            stored["createStatus"] = "Completed"
        return {k: v for k, v in stored.items() if k != SECRET_FIELD}

    @staticmethod
    async def _json_object(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def collection(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        if request.method == "GET":
            with self._lock:
                entities = [self._public(i) for i in self.integrations]
            return JSONResponse({"entities": entities, "pageNumber": 1, "total": len(entities)})
        body = await self._json_object(request)
        if body is None:
            return genesys_error(400, "body must be a JSON object")
        problem = _field_problem(body)
        for required in ("name", "outboundNotificationWebhookUrl", SECRET_FIELD):
            if problem is None and required not in body:
                problem = f"{required} is required"
        if problem:
            return genesys_error(400, problem)
        iid = str(uuid.uuid4())
        with self._lock:
            self.integrations[iid] = {
                **body,
                "id": iid,
                "recipient": {"id": str(uuid.uuid4())},
                "createStatus": "Initiated",
            }
            self._created_at[iid] = self._clock()
            public = self._public(iid)
        self._on_change(iid, True)
        return JSONResponse(public)

    async def item(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        iid = request.path_params["iid"]
        if request.method == "DELETE":
            with self._lock:
                found = self.integrations.pop(iid, None) is not None
            if not found:
                return genesys_error(404, "integration not found", "not.found")
            self._on_change(iid, False)
            return Response(status_code=204)
        patch: dict[str, Any] | None = {}
        if request.method == "PATCH":
            patch = await self._json_object(request)
            problem = "body must be a JSON object" if patch is None else _field_problem(patch)
            if problem:
                return genesys_error(400, problem)
        with self._lock:
            if iid not in self.integrations:
                return genesys_error(404, "integration not found", "not.found")
            self.integrations[iid].update(patch or {})
            public = self._public(iid)
        return JSONResponse(public)

    async def recipient_flow(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        rid = request.path_params["rid"]
        body = await self._json_object(request)
        flow = body.get("flow") if body else None
        flow_id = flow.get("id") if isinstance(flow, dict) else None
        if not isinstance(flow_id, str) or not flow_id:
            return genesys_error(400, "flow.id is required")
        with self._lock:
            known = any(i["recipient"]["id"] == rid for i in self.integrations.values())
            if not known:
                return genesys_error(404, "recipient not found", "not.found")
            self.flow_assignments[rid] = flow_id
        return JSONResponse({"id": rid, "flow": {"id": flow_id}})

    def routes(self) -> list[Route]:
        return [
            Route(BASE, self.collection, methods=["GET", "POST"]),
            Route(BASE + "/{iid}", self.item, methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v2/routing/message/recipients/{rid}", self.recipient_flow, methods=["PUT"]),
        ]
