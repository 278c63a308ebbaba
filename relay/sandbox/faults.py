"""Fault injection for the simulators: queued faults that matching requests consume."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox/"


@dataclass
class Fault:
    status: int | None = None  # answer with this status instead of the real route
    retry_after: float | None = None  # sent as Retry-After
    delay: float = 0.0  # seconds to stall first (a timeout, for a client with a short one)
    body: dict[str, Any] | None = None
    count: int = 1  # how many requests it applies to
    path_prefix: str = ""
    method: str | None = None


class FaultPlan:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected = 0

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    self.injected += 1
                    return fault
        return None


class FaultMiddleware:
    """Applies the plan to every request except the simulator's own control routes."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.plan.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is None:
            await self.app(scope, receive, send)
            return
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        body = fault.body or {"message": f"injected fault {fault.status}", "status": fault.status}
        response: Response = JSONResponse(body, status_code=fault.status, headers=headers)
        await response(scope, receive, send)


async def fault_control(request: Request, plan: FaultPlan) -> Response:
    """``POST /_sandbox/faults`` adds a Fault (JSON), ``DELETE`` clears them all."""
    if request.method == "DELETE":
        plan.clear()
        return JSONResponse({"cleared": True})
    try:
        spec = await request.json()
        fault = Fault(**spec)
    except (ValueError, TypeError) as exc:
        return JSONResponse({"message": f"bad fault: {exc}"}, status_code=400)
    plan.add(fault)
    return JSONResponse(asdict(fault), status_code=201)
