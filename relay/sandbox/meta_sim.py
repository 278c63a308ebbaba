"""A Meta simulator: the Instagram Graph API (Send API, profiles, mentions, subscriptions),
the media CDN, and the webhook side (Meta-shaped, signed event deliveries).

It follows reference/instagram.md, including the 24-hour window and Graph error bodies.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import FaultMiddleware, FaultPlan, fault_control

DAY_MS = 24 * 3600 * 1000
TEXT_LIMIT_BYTES = 1000
WINDOW_SUBCODE = 2534022


def graph_error(
    status: int, code: int, message: str, subcode: int | None = None, kind: str = "OAuthException"
) -> JSONResponse:
    err: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": uuid.uuid4().hex[:12],
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    return JSONResponse({"error": err}, status_code=status)


def sign_meta(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode_like_meta(body: dict[str, Any]) -> bytes:
    """Meta escapes non-ASCII as \\uXXXX; the signature covers exactly these bytes."""
    return json.dumps(body, separators=(",", ":")).encode("ascii")


@dataclass
class Media:
    mime: str
    size: int = 2048
    expired: bool = False
    requests: list[tuple[str, bool]] = field(default_factory=list)  # (method, ranged)
    bytes_served: int = 0


@dataclass
class User:
    igsid: str
    username: str
    name: str | None = None
    profile_pic: str | None = None
    follower_count: int = 0
    is_user_follow_business: bool = False
    is_business_follow_user: bool = False
    is_verified_user: bool = False


class MetaSimulator:
    def __init__(
        self,
        app_secret: str = "sandbox-app-secret",  # noqa: S107 (simulator only)
        access_token: str = "sandbox-access-token",  # noqa: S107
        account_id: str = "17841400000000001",
        *,
        api_version: str = "v21.0",
    ) -> None:
        self.app_secret = app_secret
        self.access_token = access_token
        self.account_id = account_id
        self.api_version = api_version
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.users: dict[str, User] = {}
        self.media: dict[str, Media] = {}
        self.mentions: dict[str, dict[str, str]] = {}
        self.last_customer_message_ms: dict[str, int] = {}
        self.private_replied: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.subscriptions: list[str] = []
        self.public_replies: list[tuple[str, str]] = []  # (comment id, text)
        self.app = self._build_app()
        self.cdn_app = Starlette(
            routes=[Route("/ig_messaging_cdn/{asset_id}", self._cdn, methods=["GET", "HEAD"])]
        )

    # -- state set up by tests ---------------------------------------------------------
    def add_user(self, igsid: str, username: str, **fields: Any) -> None:
        with self._lock:
            self.users[igsid] = User(igsid, username, **fields)

    def add_media(self, asset_id: str, mime: str, size: int = 2048, expired: bool = False) -> None:
        with self._lock:
            self.media[asset_id] = Media(mime, size, expired)

    def add_mention(self, comment_id: str, text: str, username: str) -> None:
        with self._lock:
            self.mentions[comment_id] = {"id": comment_id, "text": text, "username": username}

    def set_last_customer_message(self, igsid: str, ms: int) -> None:
        with self._lock:
            self.last_customer_message_ms[igsid] = ms

    def drop_subscription(self) -> None:
        with self._lock:
            self.subscriptions.clear()

    # -- Graph API ----------------------------------------------------------------------
    def _token_ok(self, request: Request) -> bool:
        given = request.query_params.get("access_token")
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer ") :]
        return given is not None and hmac.compare_digest(given, self.access_token)

    def _bad_token(self) -> JSONResponse:
        return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")

    async def _send(self, request: Request) -> Response:
        if not self._token_ok(request):
            return self._bad_token()
        page = request.path_params["node"]
        if page not in ("me", self.account_id):
            return graph_error(400, 100, "Unsupported post request", kind="GraphMethodException")
        try:
            body = json.loads((await request.body()).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return graph_error(400, 100, "Invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("recipient"), dict):
            return graph_error(400, 100, "(#100) param recipient must be an object")
        problem = self._check_send(body)
        if problem is not None:
            return problem
        recipient = body["recipient"]
        with self._lock:
            self.sent.append(body)
            message_id = f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE{next(self._ids)}"
        return JSONResponse(
            {
                "recipient_id": recipient.get("id", recipient.get("comment_id")),
                "message_id": message_id,
            }
        )

    def _check_send(self, body: dict[str, Any]) -> Response | None:
        recipient = body["recipient"]
        message = body.get("message")
        action = body.get("sender_action")
        if (message is None) == (action is None):
            return graph_error(400, 100, "(#100) exactly one of message or sender_action")
        if "comment_id" in recipient:
            comment = str(recipient["comment_id"])
            with self._lock:
                if comment in self.private_replied:
                    return graph_error(400, 10900, "Activity already replied to")
                self.private_replied.add(comment)
            return None
        igsid = str(recipient.get("id", ""))
        with self._lock:
            last = self.last_customer_message_ms.get(igsid)
        if igsid not in self.users and last is None:
            return graph_error(400, 100, "No matching user found", subcode=2018001)
        if isinstance(message, dict):
            problem = self._check_message(message)
            if problem is not None:
                return problem
        age = time.time() * 1000 - (last or 0)
        tagged = body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT"
        if age > DAY_MS and not (tagged and age <= 7 * DAY_MS):
            return graph_error(
                400,
                10,
                "(#10) This message is sent outside of allowed window.",
                subcode=WINDOW_SUBCODE,
            )
        return None

    def _check_message(self, message: dict[str, Any]) -> Response | None:
        text = message.get("text")
        attachment = message.get("attachment")
        if (text is None) == (attachment is None):
            return graph_error(400, 100, "(#100) message needs exactly one of text or attachment")
        if isinstance(text, str) and len(text.encode("utf-8")) > TEXT_LIMIT_BYTES:
            return graph_error(400, 100, "(#100) Length of param message[text] must be <= 1000")
        if attachment is not None:
            kind = attachment.get("type") if isinstance(attachment, dict) else None
            if kind not in ("image", "audio", "video", "file", "template"):
                return graph_error(400, 100, "(#100) Invalid attachment type")
        replies = message.get("quick_replies")
        if replies is not None:
            if not isinstance(replies, list) or len(replies) > 13:
                return graph_error(400, 100, "(#100) at most 13 quick replies")
            for reply in replies:
                if len(str(reply.get("title", ""))) > 20:
                    return graph_error(400, 100, "(#100) quick reply title over 20 characters")
        return None

    async def _node(self, request: Request) -> Response:
        if not self._token_ok(request):
            return self._bad_token()
        node = request.path_params["node"]
        fields = request.query_params.get("fields", "")
        if node == self.account_id and fields.startswith("mentioned_comment"):
            comment_id = fields.split("comment_id(", 1)[-1].split(")", 1)[0]
            with self._lock:
                mention = self.mentions.get(comment_id)
            if mention is None:
                return graph_error(400, 100, "Invalid comment id", kind="GraphMethodException")
            return JSONResponse({"mentioned_comment": mention, "id": node})
        with self._lock:
            user = self.users.get(node)
        if user is None:
            return graph_error(
                400,
                100,
                "Unsupported get request: user consent missing",
                subcode=33,
                kind="GraphMethodException",
            )
        wanted = [f for f in fields.split(",") if f] or ["name", "username"]
        data = {"id": user.igsid, **{f: getattr(user, f) for f in wanted if hasattr(user, f)}}
        return JSONResponse(data)

    async def _reply(self, request: Request) -> Response:
        if not self._token_ok(request):
            return self._bad_token()
        text = request.query_params.get("message", "")
        if not text:
            return graph_error(400, 100, "(#100) message is required")
        with self._lock:
            self.public_replies.append((request.path_params["node"], text))
            reply_id = f"1785{next(self._ids):011d}"
        return JSONResponse({"id": reply_id})

    async def _subscribed_apps(self, request: Request) -> Response:
        if not self._token_ok(request):
            return self._bad_token()
        with self._lock:
            if request.method == "POST":
                fields = request.query_params.get("subscribed_fields", "")
                self.subscriptions = [f for f in fields.split(",") if f]
                return JSONResponse({"success": True})
            if request.method == "DELETE":
                self.subscriptions.clear()
                return JSONResponse({"success": True})
            data = [{"subscribed_fields": list(self.subscriptions)}] if self.subscriptions else []
        return JSONResponse({"data": data})

    async def _cdn(self, request: Request) -> Response:
        asset = request.query_params.get("asset_id") or request.path_params["asset_id"]
        with self._lock:
            media = self.media.get(asset)
            if media is not None:
                media.requests.append((request.method, "range" in request.headers))
        if media is None:
            return Response("not found", status_code=404)
        if media.expired:
            return Response("URL signature expired", status_code=403)
        headers = {"Content-Type": media.mime, "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(media.size)
            return Response(status_code=200, headers=headers)
        if request.headers.get("range") == "bytes=0-0":
            headers["Content-Range"] = f"bytes 0-0/{media.size}"
            with self._lock:
                media.bytes_served += 1
            return Response(b"\0", status_code=206, headers=headers)
        with self._lock:
            media.bytes_served += media.size
        return Response(b"\0" * media.size, headers=headers)

    async def _faults(self, request: Request) -> Response:
        return await fault_control(request, self.faults)

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/_sandbox/faults", self._faults, methods=["POST", "DELETE"]),
                Route("/{version}/{node}/messages", self._send, methods=["POST"]),
                Route("/{version}/{node}/replies", self._reply, methods=["POST"]),
                Route(
                    "/{version}/{node}/subscribed_apps",
                    self._subscribed_apps,
                    methods=["GET", "POST", "DELETE"],
                ),
                Route("/{version}/{node}", self._node, methods=["GET"]),
            ],
            middleware=[Middleware(FaultMiddleware, plan=self.faults)],
        )

    # -- the webhook side -------------------------------------------------------------
    def messaging(
        self,
        sender: str,
        message: dict[str, Any] | None = None,
        *,
        ts_ms: int | None = None,
        **other: Any,
    ) -> dict[str, Any]:
        """One ``messaging[]`` item from a customer; records it for the 24-hour window."""
        ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
        item: dict[str, Any] = {
            "sender": {"id": sender},
            "recipient": {"id": self.account_id},
            "timestamp": ts,
        }
        if message is not None:
            item["message"] = {"mid": f"aWdfZAG1faXRlbTox{uuid.uuid4().hex}", **message}
        item.update(other)
        if message is not None and not message.get("is_echo"):
            with self._lock:
                prev = self.last_customer_message_ms.get(sender, 0)
                self.last_customer_message_ms[sender] = max(prev, ts)
        return item

    def webhook(
        self,
        messaging: list[dict[str, Any]] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.account_id, "time": int(time.time() * 1000)}
        if messaging:
            entry["messaging"] = messaging
        if changes:
            entry["changes"] = changes
        return {"object": "instagram", "entry": [entry]}

    def deliver_webhook(
        self,
        url: str,
        body: dict[str, Any] | bytes,
        secret: str | None = None,
        timeout: float = 20.0,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else encode_like_meta(body)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_meta(raw, secret or self.app_secret),
        }
        return httpx.post(url, content=raw, headers=headers, timeout=timeout)

    @staticmethod
    def verify_webhook(url: str, verify_token: str, challenge: str) -> httpx.Response:
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": verify_token,
            "hub.challenge": challenge,
        }
        return httpx.get(url, params=params, timeout=10)
