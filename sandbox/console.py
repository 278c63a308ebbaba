"""The sandbox console: the Instagram customer's thread on one side, the Genesys agent's
view on the other, both driven through the real relay and updated live (server-sent events).

Only a view over the simulators' own records (what Meta's Send API accepted, what Genesys
received, its receipts and routing changes) plus the console's log of what was typed; the
relay is reached over HTTP like everywhere else. Plain HTML/CSS/JS from ``console_static/``.

Routes: ``GET /`` the page, ``GET /events`` the state as server-sent events (whenever it
changes), ``GET /api/state`` the same once, ``POST /api/customer/{action}`` (``dm``,
``photo``, ``story``, ``comment``, ``tap``) and ``POST /api/agent/reply``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .demo import PHOTO_ASSET, STORY_ASSET, DemoStack
from .genesys_agent import quick_reply
from .stack import WEBHOOK_SECRET

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

STATIC = Path(__file__).parent / "console_static"
HOUR_MS = 3600 * 1000
WINDOW_MS = 24 * HOUR_MS
ESCALATE_AFTER_MS = 20 * HOUR_MS  # the relay's default IGBRIDGE_WINDOW_ESCALATE_AFTER
POLL_SECONDS = 0.25  # how often an open event stream looks for changes
KEEPALIVE_SECONDS = 15.0
MAX_TEXT = 2000  # characters a console form may send (Instagram's own DM limit is 1000 bytes)


class CustomerAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=40)
    text: str = Field(default="", max_length=MAX_TEXT)
    # Simulated time: the message is dated this many hours ago (the window and SLA follow).
    hours_ago: float = Field(default=0.0, ge=0, le=24 * 8, alias="hoursAgo")


class AgentReply(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    customer: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    quick_replies: list[str] = Field(default_factory=list, max_length=13, alias="quickReplies")
    originating_entity: Literal["Human", "Bot"] = Field(default="Human", alias="from")


def _meta_ms(value: object) -> int | None:
    """The customer's time (Meta's, as the relay passed it on) in epoch milliseconds."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


def _answer(body: dict[str, Any]) -> str:
    """What a structured response says (the option the customer chose)."""
    answer = body.get("buttonResponse") or {}
    return f"{answer.get('text', '')} ({answer.get('type', 'answer')})" if answer else ""


class Refused(Exception):
    """Bad input from the page: a 400 with this reason."""


class Console:
    def __init__(self, demo: DemoStack) -> None:
        self.demo = demo
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._typed: list[dict[str, Any]] = []  # what the customer did, in order
        self._agent: list[dict[str, Any]] = []  # what the agent sent, in order
        self._sent_at: list[float] = []  # when the console first saw each Meta send
        self._comments: dict[str, str] = {}  # comment id → commenter
        self.refused: Counter[str] = Counter()  # bad requests by route
        self.app = Starlette(
            routes=[
                Route("/", self._page, methods=["GET"]),
                Route("/events", self._events, methods=["GET"]),
                Route("/api/state", self._state, methods=["GET"]),
                Route("/api/customer/{action}", self._customer, methods=["POST"]),
                Route("/api/agent/reply", self._reply, methods=["POST"]),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ]
        )

    @contextmanager
    def serving(self, port: int = 0) -> Iterator[str]:
        from .server import serve_in_thread

        with serve_in_thread(self.app, port=port) as server:
            try:
                yield f"{server.url}/"
            finally:
                self._closing.set()  # open event streams end, so the server can stop

    # -- the state the page shows ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        sb = self.demo.sb
        now = time.time()
        with self._lock:
            while len(self._sent_at) < len(sb.meta.sent):
                self._sent_at.append(now)
            sent = list(zip(self._sent_at, sb.meta.sent, strict=False))
            typed = list(self._typed)
            agent = list(self._agent)
            comments = dict(self._comments)
        received = sb.genesys.snapshot()
        receipts = {r["id"]: r for r in list(sb.genesys.receipts)}
        priorities = dict(sb.genesys.priority_changes)
        last_ms = dict(sb.meta.last_customer_message_ms)
        customers = [
            {"id": u.igsid, "username": u.username, "name": u.name or u.username}
            for u in sb.meta.users.values()
        ]
        threads: dict[str, list[dict[str, Any]]] = {c["id"]: [] for c in customers}
        for item in typed:
            threads.setdefault(item["customer"], []).append({**item, "who": "customer"})
        for at, body in sent:
            to = body["recipient"]
            who = to.get("id") or comments.get(str(to.get("comment_id")), "")
            message = body.get("message") or {}
            if who and "text" in message:
                threads.setdefault(who, []).append(
                    {
                        "who": "business",
                        "at": at,
                        "text": message["text"],
                        "quickReplies": [q["title"] for q in message.get("quick_replies") or []],
                        "private": "comment_id" in to,
                    }
                )
        for items in threads.values():
            items.sort(key=lambda i: i["at"])
        conversations: dict[str, dict[str, Any]] = {}
        for msg in received:
            conv = conversations.setdefault(
                msg.from_id,
                {"customer": msg.from_id, "conversationId": msg.conversation_id, "items": []},
            )
            conv["attributes"] = msg.attributes
            conv["conversationId"] = msg.conversation_id
            attachments = [
                c["attachment"]["mediaType"]
                for c in msg.body.get("content") or []
                if "attachment" in c
            ]
            conv["items"].append(
                {
                    "direction": "in",
                    "at": msg.received_at,
                    "text": msg.text or _answer(msg.body),
                    "source": msg.attributes.get("Source", ""),
                    "attachments": attachments,
                    "structured": msg.endpoint != "message",
                    "sentMs": _meta_ms(msg.body["channel"].get("time")),
                }
            )
        for reply in agent:
            replied = conversations.get(reply["customer"])
            if replied is None:
                continue
            receipt = receipts.get(reply["id"])
            reasons = (receipt or {}).get("reasons") or []
            replied["items"].append(
                {
                    **reply,
                    "direction": "out",
                    "receipt": receipt["status"] if receipt else "Sending",
                    "reason": f"{reasons[0]['code']}: {reasons[0]['message']}" if reasons else "",
                }
            )
        for conv in conversations.values():
            conv["items"].sort(key=lambda i: i["at"])
            conv["window"] = self._window(last_ms.get(conv["customer"]))
            conv["sla"] = self._sla(conv, priorities.get(conv["conversationId"]))
        return {
            "customers": customers,
            "threads": threads,
            "conversations": list(conversations.values()),
            "refused": dict(self.refused),  # the console's 400s so far, by side
        }

    @staticmethod
    def _window(last_ms: int | None) -> dict[str, Any]:
        if last_ms is None:
            return {"lastMs": None, "closesMs": None, "tagClosesMs": None}
        return {
            "lastMs": last_ms,
            "closesMs": last_ms + WINDOW_MS,
            "tagClosesMs": last_ms + 7 * WINDOW_MS,
        }

    @staticmethod
    def _sla(conv: dict[str, Any], priority: int | None) -> dict[str, Any]:
        if priority is not None:
            return {"state": "escalated", "priority": priority}
        waiting_since: float | None = None
        for item in conv["items"]:
            if item["direction"] == "in" and waiting_since is None:
                waiting_since = item.get("sentMs") or item["at"] * 1000
            elif item["direction"] == "out" and item["receipt"] == "Delivered":
                waiting_since = None
        if waiting_since is None:
            return {"state": "answered"}
        return {"state": "waiting", "escalatesMs": waiting_since + ESCALATE_AFTER_MS}

    async def _state(self, _: Request) -> Response:
        return JSONResponse(self.snapshot())

    async def _events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            last = ""
            quiet = 0.0
            while not self._closing.is_set() and not await request.is_disconnected():
                state = json.dumps(self.snapshot(), ensure_ascii=False)
                if state != last:
                    last, quiet = state, 0.0
                    yield f"data: {state}\n\n"
                elif quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_SECONDS)
                quiet += POLL_SECONDS

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def _page(self, _: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    # -- the customer's side -----------------------------------------------------------------
    async def _customer(self, request: Request) -> Response:
        action = request.path_params["action"]
        try:
            if action not in ("dm", "photo", "story", "comment", "tap"):
                raise Refused(f"unknown action {action!r}")
            form = await self._parse(request, CustomerAction)
            return await run_in_threadpool(self._act, action, form)
        except Refused as exc:
            return self._refuse("customer", str(exc))

    def _act(self, action: str, form: CustomerAction) -> Response:
        sb = self.demo.sb
        meta = sb.meta
        user = meta.users.get(form.customer)
        if user is None:
            raise Refused(f"no such customer {form.customer!r}")
        ts = int(time.time() * 1000 - form.hours_ago * HOUR_MS)
        text = form.text.strip()
        shown = text
        if action in ("dm", "comment", "tap") and not text:
            raise Refused("text is required")
        if action == "dm":
            body = meta.webhook([meta.messaging(user.igsid, {"text": text}, ts_ms=ts)])
        elif action in ("photo", "story"):
            kind = "image" if action == "photo" else "story_mention"
            asset = PHOTO_ASSET if action == "photo" else STORY_ASSET
            payload = {"type": kind, "payload": {"url": sb.cdn_url(asset)}}
            body = meta.webhook([meta.messaging(user.igsid, {"attachments": [payload]}, ts_ms=ts)])
            shown = "[sent a photo]" if action == "photo" else "[mentioned the brand in a story]"
        elif action == "comment":
            body = meta.webhooks.comment(user.igsid, user.username, text)
            with self._lock:
                self._comments[body["entry"][0]["changes"][0]["value"]["id"]] = user.igsid
            shown = f"[commented on a post] {text}"
        else:
            try:
                body = meta.tap_quick_reply(user.igsid, text)
            except LookupError as exc:
                raise Refused(str(exc)) from None
        resp = meta.deliver_webhook(f"{self.demo.relay.url}/webhooks/instagram", body)
        with self._lock:
            self._typed.append(
                {"customer": user.igsid, "kind": action, "text": shown, "at": time.time()}
            )
        return JSONResponse({"relay": resp.status_code, "answer": resp.text})

    # -- the agent's side -----------------------------------------------------------------
    async def _reply(self, request: Request) -> Response:
        try:
            form = await self._parse(request, AgentReply)
            if form.customer not in self.demo.sb.meta.users:
                raise Refused(f"no such customer {form.customer!r}")
            return await run_in_threadpool(self._send_reply, form)
        except Refused as exc:
            return self._refuse("agent", str(exc))

    def _send_reply(self, form: AgentReply) -> Response:
        genesys = self.demo.sb.genesys
        options = [q.strip() for q in form.quick_replies if q.strip()]
        extra: dict[str, Any] = {"originatingEntity": form.originating_entity}
        if options:
            extra |= {"type": "Structured", "content": [quick_reply(q) for q in options]}
        body = genesys.build_agent_message(form.customer, form.text, **extra)
        with self._lock:
            self._agent.append(
                {
                    "customer": form.customer,
                    "id": body["id"],
                    "text": form.text,
                    "quickReplies": options,
                    "from": form.originating_entity,
                    "at": time.time(),
                }
            )
        resp = genesys.post_agent_message(
            f"{self.demo.relay.url}/webhooks/genesys", body, WEBHOOK_SECRET
        )
        return JSONResponse({"relay": resp.status_code, "answer": resp.text, "id": body["id"]})

    # -- input ------------------------------------------------------------------------------
    @staticmethod
    async def _parse(request: Request, model: type[M]) -> M:
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise Refused(f"{where}: {first['msg']}") from None

    def _refuse(self, side: str, reason: str) -> Response:
        self.refused[side] += 1
        log.warning("console request refused", extra={"side": side, "reason": reason})
        return JSONResponse({"error": reason}, status_code=400)
