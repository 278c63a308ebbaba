"""A Meta simulator: the Instagram Graph API (Send API, profiles, mentions, subscriptions),
the media CDN (meta_cdn.py) and the webhook side (meta_webhooks.py).

It follows Meta's Instagram messaging documentation, including the 24-hour window and
Graph error bodies (rules in meta_contract.py). Graph routes answer under any
``/{version}/``. Faults: ``sim.faults`` for the Graph API, ``sim.cdn.faults`` for the CDN
(see faults.py).
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import meta_webhooks
from .faults import FaultPlan, app_with_faults
from .meta_cdn import Media, MediaCDN
from .meta_contract import (
    ANOTHER_APP,
    BAD_TOKEN,
    NO_USER,
    OUTSIDE_WINDOW,
    TAG_WINDOW_MS,
    GraphProblem,
    check_send_body,
    invalid,
    is_human_agent_tagged,
    media_problem,
    window_problem,
)
from .meta_webhooks import MetaWebhooks, encode_like_meta, sign_meta

__all__ = ["MetaSimulator", "User", "encode_like_meta", "sign_meta"]

# ?fields=mentioned_comment.comment_id(ID){id,text,timestamp,username}; the braces are
# optional (then only the id is returned), nothing else is parsed.
_MENTION_FIELDS = re.compile(r"mentioned_comment\.comment_id\(([^()]+)\)(?:\{([^{}]*)\})?")
# Webhook fields by the edge that takes them. Instagram Login subscribes the Instagram
# account's own edge with Instagram's names (``mentions`` exists only with Facebook Login);
# Facebook Login subscribes the linked Page's edge with Page names. Each edge refuses the
# other's names (``feed`` on the Instagram edge; ``comments``, ``message_edit`` on a Page).
INSTAGRAM_FIELDS = frozenset(
    {
        "comments",
        "live_comments",
        "message_edit",
        "message_reactions",
        "messages",
        "messaging_handover",
        "messaging_optins",
        "messaging_postbacks",
        "messaging_referral",
        "messaging_seen",
        "standby",
    }
)
PAGE_FIELDS = frozenset(
    {
        "conversations",
        "feed",
        "inbox_labels",
        "mention",
        "message_deliveries",
        "message_echoes",
        "message_reactions",
        "message_reads",
        "messages",
        "messaging_handovers",
        "messaging_optins",
        "messaging_policy_enforcement",
        "messaging_postbacks",
        "messaging_referrals",
        "name",
        "picture",
        "ratings",
        "standby",
    }
)


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


PROFILE_FIELDS = frozenset(asdict(User("", "")).keys() - {"igsid"})

# What Meta grants a Facebook Login Page token for Instagram messaging, by default.
PAGE_SCOPES = ("instagram_basic", "instagram_manage_messages", "pages_manage_metadata")
LONG_LIVED_SECONDS = 60 * 86400  # Instagram Login long-lived tokens
REFRESHABLE_AFTER = 86400  # ... may be refreshed once at least 24 hours old


@dataclass
class Token:
    """An access token as Meta knows it: whose, which login issued it, until when (None:
    no clock expiry, as Page tokens), and its permissions."""

    account_id: str
    kind: str = "page"  # "page" (Facebook Login) or "instagram" (Instagram Login user)
    expires_at: float | None = None  # epoch seconds
    scopes: tuple[str, ...] = PAGE_SCOPES
    issued_at: float = 0.0
    username: str | None = None
    valid: bool = True  # False: revoked (a password change, a removed permission)


def _now_ms() -> int:
    return int(time.time() * 1000)


class MetaSimulator:
    def __init__(
        self,
        app_secret: str = "sandbox-app-secret",  # noqa: S107 (simulator only)
        access_token: str = "sandbox-access-token",  # noqa: S107
        account_id: str = "17841400000000001",
        *,
        api_version: str = "v21.0",
        username: str = "sandbox_business",
        page_id: str = "104000000000001",
        access_token_kind: str = "page",  # noqa: S107 (a kind, not a secret)
    ) -> None:
        self.app_secret = app_secret
        self.access_token = access_token
        self.account_id = account_id
        self.page_id = page_id  # the Facebook Page linked to the account
        # Which login issued ``access_token``: "page" (Facebook Login) or "instagram".
        self.access_token_kind = access_token_kind
        self.api_version = api_version
        self.username = username
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.app_id = "sandbox-app-id"
        # Tokens with an identity of their own (add_token); ``access_token`` stays valid
        # for this account unless registered here too.
        self.tokens: dict[str, Token] = {}
        self.refreshed: list[str] = []  # tokens handed out by /refresh_access_token
        self.users: dict[str, User] = {}
        self.mentions: dict[str, dict[str, str]] = {}
        self.last_customer_message_ms: dict[str, int] = {}
        self.comment_times_ms: dict[str, int] = {}  # comments seen through the builders
        self.private_replied: set[str] = set()
        # Files on the web Meta fetches attachments from: URL -> (served MIME type, bytes).
        self.files: dict[str, tuple[str, int]] = {}
        self.other_app_threads: set[str] = set()  # customers another app controls
        self.sent: list[dict[str, Any]] = []  # accepted Send API bodies, in order
        self.sent_ids: list[str] = []  # the message_id answered for each send
        # Send API bodies refused by the simulator's own rules, with (code, subcode).
        self.refused: list[tuple[dict[str, Any], int, int | None]] = []
        self.subscriptions: list[str] = []  # the Instagram account's edge (Instagram Login)
        self.page_subscriptions: list[str] = []  # the Page's edge (Facebook Login)
        self.public_replies: list[tuple[str, str]] = []  # (comment id, text)
        self.cdn = MediaCDN()
        self.media: dict[str, Media] = self.cdn.assets
        self.cdn_app: Starlette = self.cdn.app
        self.webhooks = MetaWebhooks(
            account_id, on_customer=self._customer_wrote, on_comment=self._comment_seen
        )
        self.app = self._build_app()

    # -- state set up by tests ---------------------------------------------------------------
    def add_user(
        self,
        igsid: str,
        username: str,
        name: str | None = None,
        profile_pic: str | None = None,
        follower_count: int = 0,
        is_user_follow_business: bool = False,
        is_business_follow_user: bool = False,
        is_verified_user: bool = False,
    ) -> None:
        user = User(
            igsid,
            username,
            name,
            profile_pic,
            follower_count,
            is_user_follow_business,
            is_business_follow_user,
            is_verified_user,
        )
        with self._lock:
            self.users[igsid] = user

    def add_media(self, asset_id: str, mime: str, size: int = 2048, expired: bool = False) -> Media:
        return self.cdn.add(asset_id, mime, size, expired)

    def add_mention(
        self, comment_id: str, text: str, username: str, timestamp: str | None = None
    ) -> None:
        when = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        with self._lock:
            self.mentions[comment_id] = {
                "id": comment_id,
                "text": text,
                "timestamp": when,
                "username": username,
            }

    def set_last_customer_message(self, igsid: str, ms: int) -> None:
        """Meta's clock: the customer last wrote at ``ms`` (epoch milliseconds)."""
        with self._lock:
            self.last_customer_message_ms[igsid] = ms

    def _customer_wrote(self, igsid: str, ms: int) -> None:
        # Webhooks may arrive out of order: an older event never closes the window.
        with self._lock:
            previous = self.last_customer_message_ms.get(igsid, ms)
            self.last_customer_message_ms[igsid] = max(ms, previous)

    def _comment_seen(self, comment_id: str, ms: int) -> None:
        with self._lock:
            self.comment_times_ms[comment_id] = ms

    def host_file(self, url: str, mime: str, size: int) -> None:
        """A file Meta would find at ``url`` when an attachment points there."""
        with self._lock:
            self.files[url] = (mime, size)

    def drop_subscription(self) -> None:
        """Meta unsubscribes the account (after about an hour of failed deliveries)."""
        with self._lock:
            self.subscriptions.clear()
            self.page_subscriptions.clear()

    def add_token(
        self,
        token: str,
        account_id: str | None = None,
        *,
        kind: str = "page",
        expires_in: float | None = None,
        age: float = 0.0,
        scopes: tuple[str, ...] = PAGE_SCOPES,
        username: str | None = None,
    ) -> Token:
        """A token Meta knows: for ``account_id`` (default this account), issued ``age``
        seconds ago, running out ``expires_in`` seconds from now (None: never)."""
        now = time.time()
        info = Token(
            account_id or self.account_id,
            kind,
            None if expires_in is None else now + expires_in,
            scopes,
            now - age,
            username,
        )
        with self._lock:
            self.tokens[token] = info
        return info

    # -- Graph API -----------------------------------------------------------------------------
    def _given_token(self, request: Request) -> str | None:
        given = request.query_params.get("access_token")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and bearer:
            given = bearer
        return given

    def _known(self, given: str | None) -> Token | None:
        """The registered token, if ``given`` is one that still works."""
        with self._lock:
            info = self.tokens.get(given or "")
        if info is None or not info.valid:
            return None
        if info.expires_at is not None and info.expires_at <= time.time():
            return None
        return info

    def _token_ok(self, request: Request) -> bool:
        given = self._given_token(request)
        if given is not None and given in self.tokens:
            return self._known(given) is not None
        return given is not None and hmac.compare_digest(given.encode(), self.access_token.encode())

    def _token_kind(self, request: Request) -> str | None:
        """Which login issued the request's token ("page" or "instagram")."""
        given = self._given_token(request)
        known = self._known(given)
        if known is not None:
            return known.kind
        return self.access_token_kind if given == self.access_token else None

    def _is_account(self, node: str) -> bool:
        return node in ("me", self.account_id)

    async def _send(self, request: Request) -> Response:
        if not self._token_ok(request):
            return BAD_TOKEN.response()
        if not self._is_account(request.path_params["node"]):
            return GraphProblem(
                400, 100, "Unsupported post request", 33, "GraphMethodException"
            ).response()
        try:
            body = json.loads((await request.body()).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return invalid("the request body is not valid JSON").response()
        problem = check_send_body(body) or self._check_file(body) or self._check_recipient(body)
        if problem is not None:
            with self._lock:
                self.refused.append((body, problem.code, problem.subcode))
            return problem.response()
        recipient = body["recipient"]
        with self._lock:
            self.sent.append(body)
            message_id = f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE{next(self._ids):012d}"
            self.sent_ids.append(message_id)
        return JSONResponse(
            {
                "recipient_id": str(recipient.get("id", recipient.get("comment_id"))),
                "message_id": message_id,
            }
        )

    def _check_file(self, body: dict[str, Any]) -> GraphProblem | None:
        """What Meta finds behind an attachment's URL, by its served type and size."""
        attachment = body.get("message", {}).get("attachment")
        url = attachment.get("payload", {}).get("url") if isinstance(attachment, dict) else None
        with self._lock:
            found = self.files.get(url) if isinstance(url, str) else None
        if found is None or not isinstance(attachment, dict) or not isinstance(url, str):
            return None
        return media_problem(str(attachment.get("type")), url, *found)

    def _check_recipient(self, body: dict[str, Any]) -> GraphProblem | None:
        """Who may be written to now; a private reply uses up its comment's one reply."""
        recipient = body["recipient"]
        now = _now_ms()
        with self._lock:
            if "comment_id" in recipient:
                comment = str(recipient["comment_id"])
                if comment in self.private_replied:
                    return GraphProblem(400, 10900, "Activity already replied to")
                seen = self.comment_times_ms.get(comment)  # unknown comments: age not checked
                if seen is not None and now - seen > TAG_WINDOW_MS:
                    return OUTSIDE_WINDOW
                self.private_replied.add(comment)
                return None
            igsid = str(recipient["id"])
            if igsid in self.other_app_threads:
                return ANOTHER_APP
            last = self.last_customer_message_ms.get(igsid)
            if igsid not in self.users and last is None:
                return NO_USER
        if last is None:  # known, but never wrote to the business: no window is open
            return OUTSIDE_WINDOW
        return window_problem(now - last, is_human_agent_tagged(body))

    async def _node(self, request: Request) -> Response:
        if not self._token_ok(request):
            return BAD_TOKEN.response()
        node = request.path_params["node"]
        fields = request.query_params.get("fields", "")
        owner = self._known(self._given_token(request))
        if node == "me" and self._token_kind(request) == "page":
            # A Page token's /me is the Page; its Instagram account is the linked one.
            if owner is not None:
                return self._page(fields, owner.account_id, owner.username or "")
            return self._page(fields, self.account_id, self.username)
        if node == "me" and owner is not None and owner.account_id != self.account_id:
            # /me answers whose token it is.
            return JSONResponse({"id": owner.account_id, "username": owner.username or ""})
        if self._is_account(node):
            return self._account(fields)
        with self._lock:
            user = self.users.get(node)
        if user is None:
            return GraphProblem(
                400,
                100,
                f"Unsupported get request. Object with ID '{node}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation",
                33,
                "GraphMethodException",
            ).response()
        wanted = [f for f in fields.split(",") if f] or ["name", "username"]
        unknown = [f for f in wanted if f not in PROFILE_FIELDS and f != "id"]
        if unknown:
            return invalid(f"Tried accessing nonexisting field ({unknown[0]})").response()
        profile = asdict(user)
        return JSONResponse({"id": user.igsid, **{f: profile[f] for f in wanted if f != "id"}})

    def _page(self, fields: str, account_id: str, username: str) -> Response:
        """``/me`` with a Page token: the Page, and the Instagram account linked to it
        (``instagram_business_account{id,username}`` expands it, as Graph field expansion)."""
        linked = {"id": account_id, "username": username}
        page: dict[str, Any] = {
            "id": self.page_id,
            "name": f"{self.username} Page",
            "instagram_business_account": linked,
        }
        answer: dict[str, Any] = {}
        for field, sub in re.findall(r"([a-z_]+)(?:\{([a-z_,]*)\})?", fields) or [("id", "")]:
            if field not in page:
                return invalid(f"Tried accessing nonexisting field ({field})").response()
            if field == "instagram_business_account":
                wanted = [f for f in sub.split(",") if f] or ["id"]
                answer[field] = {f: linked[f] for f in wanted if f in linked}
            else:
                answer[field] = page[field]
        return JSONResponse(answer)

    def _account(self, fields: str) -> Response:
        """The business account: its id and username, or a mentioned comment."""
        match = _MENTION_FIELDS.fullmatch(fields)
        if match is not None:
            comment_id, sub = match.groups()
            with self._lock:
                mention = self.mentions.get(comment_id)
            if mention is None:
                return invalid("Invalid comment id").response()
            wanted = [f for f in (sub or "id").split(",") if f]
            found = {f: mention[f] for f in wanted if f in mention}
            return JSONResponse({"mentioned_comment": found, "id": self.account_id})
        wanted = [f for f in fields.split(",") if f] or ["id"]
        if any(f not in ("id", "username") for f in wanted):
            return invalid("this simulator knows only the account's id and username").response()
        return JSONResponse({"id": self.account_id, "username": self.username})

    async def _reply(self, request: Request) -> Response:
        """A public reply under a comment: ``POST /{comment-id}/replies?message=…``."""
        if not self._token_ok(request):
            return BAD_TOKEN.response()
        text = request.query_params.get("message", "")
        if not text:
            return invalid("param message is required").response()
        with self._lock:
            self.public_replies.append((request.path_params["node"], text))
            reply_id = f"1785{next(self._ids):013d}"
        return JSONResponse({"id": reply_id})

    async def _subscribed_apps(self, request: Request) -> Response:
        """``/{page-id}/subscribed_apps`` with a Page token and Page fields (Facebook Login),
        ``/{ig-user-id}/subscribed_apps`` with an Instagram token and Instagram fields
        (Instagram Login); anything else is refused as Meta would."""
        if not self._token_ok(request):
            return BAD_TOKEN.response()
        kind = self._token_kind(request)
        node = request.path_params["node"]
        if node == "me":
            node = self.page_id if kind == "page" else self.account_id
        if node == self.page_id:
            if kind != "page":  # an Instagram Login token means nothing to a Page
                return BAD_TOKEN.response()
            allowed, held = PAGE_FIELDS, self.page_subscriptions
        elif node == self.account_id:
            if kind != "instagram":  # with Facebook Login the edge is the Page's
                return invalid(
                    "Tried accessing nonexisting field (subscribed_apps) on node type (IGUser)"
                ).response()
            allowed, held = INSTAGRAM_FIELDS, self.subscriptions
        else:
            return GraphProblem(
                400,
                100,
                f"Unsupported {request.method.lower()} request. Object with ID '{node}' does not "
                "exist, cannot be loaded due to missing permissions, or does not support this "
                "operation",
                33,
                "GraphMethodException",
            ).response()
        if request.method == "POST":
            # Graph takes parameters in the query string or a form-encoded body.
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            raw = request.query_params.get("subscribed_fields") or ",".join(
                form.get("subscribed_fields", [])
            )
            wanted = [f for f in raw.split(",") if f]
            wrong = [f for f in wanted if f not in allowed] or ([] if wanted else [""])
            if wrong:
                return invalid(
                    f"Param subscribed_fields must be one of {{{', '.join(sorted(allowed))}}}"
                    f' - got "{wrong[0]}"'
                ).response()
            with self._lock:
                held[:] = wanted  # a POST sets the app's fields on this node
            return JSONResponse({"success": True})
        with self._lock:
            if request.method == "DELETE":
                held.clear()
                return JSONResponse({"success": True})
            app = {"id": self.app_id, "name": "igbridge sandbox", "subscribed_fields": list(held)}
            data = [app] if held else []
        return JSONResponse({"data": data})

    async def _debug_token(self, request: Request) -> Response:
        """``GET /debug_token?input_token=T&access_token=<app id>|<app secret>``."""
        app_token = request.query_params.get("access_token", "")
        if not hmac.compare_digest(app_token.encode(), f"{self.app_id}|{self.app_secret}".encode()):
            return BAD_TOKEN.response()
        given = request.query_params.get("input_token", "")
        with self._lock:
            info = self.tokens.get(given)
        if info is None and given == self.access_token:
            info = Token(self.account_id)
        if info is None:
            data: dict[str, Any] = {
                "is_valid": False,
                "scopes": [],
                "error": {"code": 190, "message": "Invalid OAuth access token."},
            }
            return JSONResponse({"data": data})
        alive = self._known(given) is not None or (given == self.access_token and info.valid)
        data = {
            "app_id": self.app_id,
            "type": "PAGE" if info.kind == "page" else "USER",
            "application": "igbridge sandbox",
            "expires_at": int(info.expires_at or 0),
            "is_valid": alive,
            "issued_at": int(info.issued_at),
            "scopes": list(info.scopes),
            "user_id": info.account_id,
        }
        if not alive:
            data["error"] = {"code": 190, "message": "Error validating access token."}
        return JSONResponse({"data": data})

    async def _refresh_access_token(self, request: Request) -> Response:
        """Instagram Login: ``GET /refresh_access_token?grant_type=ig_refresh_token``."""
        if request.query_params.get("grant_type") != "ig_refresh_token":
            return invalid("grant_type must be ig_refresh_token").response()
        given = self._given_token(request) or ""
        info = self._known(given)
        if info is None or info.kind != "instagram":
            return BAD_TOKEN.response()
        if time.time() - info.issued_at < REFRESHABLE_AFTER:
            return invalid("the token can be refreshed once it is at least 24 hours old").response()
        fresh = (
            f"IGAA{next(self._ids):08d}{hmac.new(given.encode(), b'r', 'sha256').hexdigest()[:24]}"
        )
        self.add_token(
            fresh,
            info.account_id,
            kind="instagram",
            expires_in=LONG_LIVED_SECONDS,
            scopes=info.scopes,
            username=info.username,
        )
        with self._lock:
            self.refreshed.append(fresh)
        return JSONResponse(
            {"access_token": fresh, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
        )

    async def _sent(self, _: Request) -> Response:
        with self._lock:
            return JSONResponse(list(self.sent))

    def _build_app(self) -> Starlette:
        return app_with_faults(
            [
                Route("/_sandbox/sent", self._sent, methods=["GET"]),
                Route("/refresh_access_token", self._refresh_access_token, methods=["GET"]),
                Route("/{version}/debug_token", self._debug_token, methods=["GET"]),
                Route("/{version}/{node}/messages", self._send, methods=["POST"]),
                Route("/{version}/{node}/replies", self._reply, methods=["POST"]),
                Route(
                    "/{version}/{node}/subscribed_apps",
                    self._subscribed_apps,
                    methods=["GET", "POST", "DELETE"],
                ),
                Route("/{version}/{node}", self._node, methods=["GET"]),
            ],
            self.faults,
        )

    # -- the customer taps what the business offered -----------------------------------------
    def tap_quick_reply(self, igsid: str, title: str) -> dict[str, Any]:
        """The webhook Meta sends when ``igsid`` taps the quick reply ``title`` of the latest
        message offering it: the title as the text, the payload exactly as it was sent."""
        for body in reversed(self.sent):
            if body["recipient"].get("id") != igsid:
                continue
            for option in body.get("message", {}).get("quick_replies") or []:
                if option.get("title") == title:
                    return self.webhooks.quick_reply(igsid, title, str(option["payload"]))
        raise LookupError(f"no quick reply {title!r} was sent to {igsid}")

    def tap_button(self, igsid: str, title: str) -> dict[str, Any]:
        """The ``messaging_postbacks`` webhook for ``igsid`` tapping the postback button
        ``title`` of the latest template offering it."""
        for body in reversed(self.sent):
            if body["recipient"].get("id") != igsid:
                continue
            attachment = body.get("message", {}).get("attachment") or {}
            for element in (attachment.get("payload") or {}).get("elements") or []:
                for button in element.get("buttons") or []:
                    if button.get("type") == "postback" and button.get("title") == title:
                        return self.webhooks.postback(igsid, title, str(button["payload"]))
        raise LookupError(f"no button {title!r} was sent to {igsid}")

    # -- the webhook side (builders: ``sim.webhooks``, see meta_webhooks.py) ---------------------
    def messaging(
        self,
        sender: str,
        message: dict[str, Any] | None = None,
        *,
        ts_ms: int | None = None,
        **other: Any,
    ) -> dict[str, Any]:
        """One ``messaging[]`` item from a customer; records it for the 24-hour window."""
        return self.webhooks.messaging(sender, message, ts_ms=ts_ms, **other)

    def webhook(
        self,
        messaging: list[dict[str, Any]] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return self.webhooks.body(messaging, changes)

    def deliver_webhook(
        self,
        url: str,
        body: dict[str, Any] | bytes,
        secret: str | None = None,
        timeout: float = 20.0,
    ) -> httpx.Response:
        """Serialise like Meta (``\\uXXXX`` escapes), sign those exact bytes, POST them."""
        return meta_webhooks.deliver_webhook(url, body, secret or self.app_secret, timeout=timeout)

    @staticmethod
    def verify_webhook(url: str, verify_token: str, challenge: str) -> httpx.Response:
        return meta_webhooks.verify_webhook(url, verify_token, challenge)
