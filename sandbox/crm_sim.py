"""A CRM for the sandbox: ``GET /lookup?igsid=…&username=…`` answers a flat JSON object of
the customer's fields (the relay merges them into the message's routing attributes), or
``{}`` for a stranger. Bearer token checked, as a real CRM would."""

from __future__ import annotations

import hmac
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CRM_TOKEN = "sandbox-crm-token"  # noqa: S105 (simulator only)


class CrmSimulator:
    def __init__(self, token: str = CRM_TOKEN) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, str]] = {}
        self.lookups: list[str] = []  # igsids asked for, in order
        self.app = Starlette(routes=[Route("/lookup", self._lookup, methods=["GET"])])

    def add_customer(self, igsid: str, **fields: str) -> None:
        with self._lock:
            self._records[igsid] = dict(fields)

    async def _lookup(self, request: Request) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        igsid = request.query_params.get("igsid", "")
        with self._lock:
            self.lookups.append(igsid)
            return JSONResponse(self._records.get(igsid, {}))
