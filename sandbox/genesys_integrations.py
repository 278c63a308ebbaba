"""Open Messaging integration provisioning in the Genesys simulator (for the operator).

Creation is asynchronous like Genesys's: ``createStatus`` reads ``Initiated`` until
``create_delay`` seconds have passed, then ``Completed``. The signing secret is
write-only: it is kept (tests may read it) but never returned. Bodies are held to the
SDK's OpenIntegrationRequest / OpenIntegrationUpdateRequest / RecipientRequest (see
genesys_contract.py). The listing pages like Genesys's (``pageSize``, ``pageNumber``,
``pageCount``, ``nextUri``), with a small default page size so clients must follow pages.

Each integration has a recipient, readable (``GET /api/v2/routing/message/recipients/{id}``,
with its ``flow`` once one is attached) and gone with its integration, as in Genesys. A
slow Genesys is a fault with a ``delay`` (faults.py); ``created`` lists every create, so a
test can tell whether one happened after some moment.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .genesys_contract import (
    SECRET_FIELD,
    genesys_error,
    validate_integration_create,
    validate_integration_update,
    validate_recipient,
)

BASE = "/api/v2/conversations/messaging/integrations/open"
DEFAULT_PAGE_SIZE = 3  # Genesys's is 25; small so that every client's paging is exercised
MAX_PAGE_SIZE = 500
# Read-only in the definition (or set by Genesys): never stored from a request body.
READ_ONLY = frozenset({"id", "selfUri"})


def _page_param(request: Request, name: str, default: int, limit: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= limit else None


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
        self.page_size = DEFAULT_PAGE_SIZE
        self._lock = threading.Lock()
        self.integrations: dict[str, dict[str, Any]] = {}  # as stored, secret included
        self._created_at: dict[str, float] = {}
        self.flow_assignments: dict[str, str] = {}  # recipient id → flow id
        self.created: list[str] = []  # every integration id ever created, in order

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
            return self._listing(request)
        body = await self._json_object(request)
        problem = "body must be a JSON object" if body is None else None
        problem = problem or validate_integration_create(body)
        if problem or body is None:
            return genesys_error(400, problem or "body must be a JSON object")
        iid = str(uuid.uuid4())
        with self._lock:
            self.integrations[iid] = {
                **{k: v for k, v in body.items() if k not in READ_ONLY},
                "id": iid,
                "recipient": {"id": str(uuid.uuid4())},
                "createStatus": "Initiated",
            }
            self._created_at[iid] = self._clock()
            self.created.append(iid)
            public = self._public(iid)
        self._on_change(iid, True)
        return JSONResponse(public)

    def _listing(self, request: Request) -> Response:
        """One page of integrations, shaped like Genesys's entity listings."""
        size = _page_param(request, "pageSize", self.page_size, MAX_PAGE_SIZE)
        number = _page_param(request, "pageNumber", 1, 1_000_000)
        if size is None or number is None:
            return genesys_error(400, "pageSize and pageNumber must be positive integers")
        with self._lock:
            everything = [self._public(i) for i in self.integrations]
        total = len(everything)
        pages = max(1, -(-total // size))

        def uri(page: int) -> str:
            return f"{BASE}?pageSize={size}&pageNumber={page}"

        listing: dict[str, Any] = {
            "entities": everything[(number - 1) * size : number * size],
            "pageSize": size,
            "pageNumber": number,
            "total": total,
            "pageCount": pages,
            "firstUri": uri(1),
            "lastUri": uri(pages),
            "selfUri": uri(number),
        }
        if number < pages:
            listing["nextUri"] = uri(number + 1)
        if number > 1:
            listing["previousUri"] = uri(number - 1)
        return JSONResponse(listing)

    async def item(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        iid = request.path_params["iid"]
        if request.method == "DELETE":
            with self._lock:
                gone = self.integrations.pop(iid, None)
                if gone is not None:  # its recipient goes with it, flow and all
                    self.flow_assignments.pop(gone["recipient"]["id"], None)
            if gone is None:
                return genesys_error(404, "integration not found", "not.found")
            self._on_change(iid, False)
            return Response(status_code=204)
        patch: dict[str, Any] | None = {}
        if request.method == "PATCH":
            patch = await self._json_object(request)
            problem = "body must be a JSON object" if patch is None else None
            problem = problem or validate_integration_update(patch)
            if problem:
                return genesys_error(400, problem)
        with self._lock:
            if iid not in self.integrations:
                return genesys_error(404, "integration not found", "not.found")
            changes = {k: v for k, v in (patch or {}).items() if k not in READ_ONLY}
            self.integrations[iid].update(changes)
            public = self._public(iid)
        return JSONResponse(public)

    async def recipient_flow(self, request: Request) -> Response:
        if not self._authorised(request):
            return genesys_error(401, "authentication required", "authentication.required")
        rid = request.path_params["rid"]
        if request.method == "GET":
            return self._recipient(rid)
        body = await self._json_object(request)
        problem = "body must be a JSON object" if body is None else validate_recipient(body)
        if problem or body is None:
            return genesys_error(400, problem or "body must be a JSON object")
        flow_id = str(body["flow"]["id"])
        with self._lock:
            known = any(i["recipient"]["id"] == rid for i in self.integrations.values())
            if not known:
                return genesys_error(404, "recipient not found", "not.found")
            self.flow_assignments[rid] = flow_id
        return JSONResponse({"id": rid, "flow": {"id": flow_id}})

    def _recipient(self, rid: str) -> Response:
        """The recipient as Genesys's Recipient model has it: ``flow`` only once attached."""
        with self._lock:
            owner = next(
                (i for i in self.integrations.values() if i["recipient"]["id"] == rid), None
            )
            if owner is None:
                return genesys_error(404, "recipient not found", "not.found")
            found: dict[str, Any] = {"id": rid, "name": owner.get("name"), "messengerType": "open"}
            flow = self.flow_assignments.get(rid)
        if flow is not None:
            found["flow"] = {"id": flow}
        return JSONResponse(found)

    def routes(self) -> list[Route]:
        return [
            Route(BASE, self.collection, methods=["GET", "POST"]),
            Route(BASE + "/{iid}", self.item, methods=["GET", "PATCH", "DELETE"]),
            Route(
                "/api/v2/routing/message/recipients/{rid}",
                self.recipient_flow,
                methods=["GET", "PUT"],
            ),
        ]
