"""Fault injection for the simulators: queued faults that matching requests consume.

A test (same process) adds faults with ``sim.faults.add(Fault(...))``; another process
uses the HTTP control routes ``POST /_sandbox/faults`` (a Fault as JSON) and
``DELETE /_sandbox/faults``. Routes under ``/_sandbox/`` are never faulted themselves.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox/"
MAX_DELAY = 120.0  # a stalled request must still end within a test's timeout


@dataclass
class Fault:
    status: int | None = None  # answer with this status instead of the real route
    retry_after: float | None = None  # sent as Retry-After (whole seconds, rounded up)
    delay: float = 0.0  # seconds to stall first: a timeout, for a client with a shorter one
    body: dict[str, Any] | None = None  # the JSON answered with ``status``
    count: int = 1  # how many matching requests it applies to
    path_prefix: str = ""
    method: str | None = None  # None: any method

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if not 0 <= self.delay <= MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY:.0f} seconds")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and self.method in (None, method)


class FaultPlan:
    """Thread-safe: tests add faults from their thread, the server consumes them."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected = 0  # how many requests a fault was applied to
        self.injected_at: list[float] = []  # when (monotonic seconds), to check pacing

    def add(self, fault: Fault) -> None:
        # A copy: consuming uses decrements the count, which is not the caller's business.
        with self._lock:
            self._faults.append(replace(fault))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [replace(f) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """Use up one application of the first fault matching this request."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    used = replace(fault)
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    self.injected += 1
                    self.injected_at.append(time.monotonic())
                    return used
        return None


def fault_response(fault: Fault) -> Response:
    assert fault.status is not None
    headers = {}
    if fault.retry_after is not None:
        # HTTP's Retry-After is whole seconds; never round a wait down to nothing.
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    body = fault.body or {"message": f"injected fault {fault.status}", "status": fault.status}
    return JSONResponse(body, status_code=fault.status, headers=headers)


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
        if fault.status is None:  # only a stall: the real route answers, late
            await self.app(scope, receive, send)
            return
        await fault_response(fault)(scope, receive, send)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "status": (int, type(None)),
    "retry_after": (int, float, type(None)),
    "delay": (int, float),
    "body": (dict, type(None)),
    "count": (int,),
    "path_prefix": (str,),
    "method": (str, type(None)),
}


def parse_fault(spec: Any) -> Fault:
    """A Fault from its JSON form; ValueError names what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object")
    known = {f.name for f in fields(Fault)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
    for name, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, _FIELD_TYPES[name]):
            raise ValueError(f"fault field {name} has the wrong type")
    return Fault(**spec)


async def fault_control(request: Request, plan: FaultPlan) -> Response:
    """``POST /_sandbox/faults`` adds a Fault (JSON); ``DELETE`` clears them; ``GET`` lists."""
    if request.method == "DELETE":
        plan.clear()
        return JSONResponse({"cleared": True})
    if request.method == "GET":
        return JSONResponse(
            {"pending": [asdict(f) for f in plan.pending()], "injected": plan.injected}
        )
    try:
        fault = parse_fault(await request.json())
    except ValueError as exc:  # includes JSON decoding errors
        return JSONResponse({"message": f"bad fault: {exc}"}, status_code=400)
    plan.add(fault)
    return JSONResponse(asdict(fault), status_code=201)


def app_with_faults(routes: Sequence[BaseRoute], plan: FaultPlan) -> Starlette:
    """A Starlette app whose routes obey ``plan``, plus the fault control routes."""

    async def control(request: Request) -> Response:
        return await fault_control(request, plan)

    return Starlette(
        routes=[
            Route(CONTROL_PREFIX + "faults", control, methods=["GET", "POST", "DELETE"]),
            *routes,
        ],
        middleware=[Middleware(FaultMiddleware, plan=plan)],
    )
