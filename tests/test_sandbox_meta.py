"""The Meta simulator over real HTTP: the Send API and its 24-hour window, profiles,
mentions, subscriptions, faults, the HTTPS media CDN, and signed webhook deliveries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from igbridge.relay.meta.events import EventKind, parse_webhook
from igbridge.relay.meta.graph import GraphClient
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.meta_sim import MetaSimulator
from igbridge.sandbox.meta_webhooks import MetaWebhooks, encode_like_meta, sign_meta
from igbridge.sandbox.server import ThreadedServer, serve_in_thread
from igbridge.sandbox.tls import TLSFiles, make_tls

APP_SECRET = "test-app-secret"
TOKEN = "test-page-token"
ACCOUNT = "17841400000000042"
CUSTOMER = "6915500000000001"
SEND = "/v21.0/me/messages"
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
WINDOW_ERROR = {"code": 10, "error_subcode": 2534022}


@dataclass
class Live:
    sim: MetaSimulator
    http: httpx.Client

    def send(self, body: dict[str, Any], token: str = TOKEN) -> httpx.Response:
        return self.http.post(SEND, json=body, headers={"Authorization": f"Bearer {token}"})

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params={"access_token": TOKEN, **params})


@pytest.fixture
def live() -> Iterator[Live]:
    sim = MetaSimulator(APP_SECRET, TOKEN, ACCOUNT)
    with serve_in_thread(sim.app) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        yield Live(sim, http)


def now_ms() -> int:
    return int(time.time() * 1000)


def text_to(igsid: str, text: str = "Hi 🙂", **extra: Any) -> dict[str, Any]:
    return {"recipient": {"id": igsid}, "message": {"text": text}, **extra}


def graph_error(resp: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = resp.json()["error"]
    assert error["fbtrace_id"]
    assert error["message"]
    return error


# -- the Send API ----------------------------------------------------------------------------


def test_send_is_accepted_and_recorded(live: Live) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms() - HOUR_MS)
    resp = live.send(text_to(CUSTOMER, messaging_type="RESPONSE"))
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["recipient_id"] == CUSTOMER
    assert answer["message_id"]
    by_query = live.http.post(
        f"/v21.0/{ACCOUNT}/messages", json=text_to(CUSTOMER), params={"access_token": TOKEN}
    )
    assert by_query.status_code == 200
    assert by_query.json()["message_id"] != answer["message_id"]
    assert [s["message"]["text"] for s in live.sim.sent] == ["Hi 🙂", "Hi 🙂"]
    assert live.http.get("/_sandbox/sent").json() == live.sim.sent


@pytest.mark.parametrize("token", ["expired-or-wrong", None])
def test_bad_token_is_graph_error_190(live: Live, token: str | None) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms())
    resp = live.http.post(SEND, json=text_to(CUSTOMER), params={"access_token": token or ""})
    assert resp.status_code == 401
    error = graph_error(resp)
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert TOKEN not in resp.text
    assert live.sim.sent == []


@pytest.mark.parametrize(
    ("ago_ms", "tagged", "allowed"),
    [
        (23 * HOUR_MS + 59 * 60 * 1000, False, True),
        (25 * HOUR_MS, False, False),
        (25 * HOUR_MS, True, True),
        (6 * DAY_MS + 23 * HOUR_MS, True, True),
        (8 * DAY_MS, True, False),
        (8 * DAY_MS, False, False),
    ],
    ids=["23h59m", "25h", "25h-tagged", "6d23h-tagged", "8d-tagged", "8d"],
)
def test_the_24_hour_window(live: Live, ago_ms: int, tagged: bool, allowed: bool) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms() - ago_ms)
    tag = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"} if tagged else {}
    resp = live.send(text_to(CUSTOMER, **tag))
    if allowed:
        assert resp.status_code == 200, resp.text
        assert len(live.sim.sent) == 1
    else:
        assert resp.status_code == 400
        error = graph_error(resp)
        assert {k: error[k] for k in WINDOW_ERROR} == WINDOW_ERROR
        assert live.sim.sent == []


def test_customer_events_open_the_window_and_others_do_not(live: Live) -> None:
    hooks = live.sim.webhooks
    hooks.seen("111", "mid.x")
    hooks.reaction("222", "mid.x")
    hooks.echo("333", "from the brand")
    for igsid in ("111", "222", "333"):
        assert graph_error(live.send(text_to(igsid)))["error_subcode"] == 2018001
    hooks.text("444", "hello")
    hooks.postback("555", "Talk to an agent", "AGENT")
    old = hooks.text("666", "old news", ts_ms=now_ms() - 2 * DAY_MS)
    assert old["entry"][0]["messaging"][0]["timestamp"] < now_ms() - DAY_MS
    for igsid in ("444", "555"):
        assert live.send(text_to(igsid)).status_code == 200
    assert graph_error(live.send(text_to("666")))["code"] == 10


def test_unknown_and_silent_recipients(live: Live) -> None:
    unknown = live.send(text_to("999"))
    assert unknown.status_code == 400
    error = graph_error(unknown)
    assert (error["code"], error["error_subcode"]) == (100, 2018001)
    live.sim.add_user("777", "never_wrote")  # known, but no message opened a window
    assert graph_error(live.send(text_to("777")))["error_subcode"] == 2534022


def test_text_limit_is_1000_utf8_bytes(live: Live) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms())
    assert live.send(text_to(CUSTOMER, "é" * 500)).status_code == 200  # 500 chars, 1000 bytes
    assert live.send(text_to(CUSTOMER, "👋" * 250)).status_code == 200
    too_long = live.send(text_to(CUSTOMER, "é" * 500 + "a"))  # 501 chars, 1001 bytes
    assert too_long.status_code == 400
    assert graph_error(too_long)["code"] == 100
    assert len(live.sim.sent) == 2


def _quick(n: int, title: str = "Yes") -> dict[str, Any]:
    reply = {"content_type": "text", "title": title, "payload": "P"}
    return {"text": "Pick one", "quick_replies": [reply] * n}


def _attachment(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"attachment": {"type": kind, "payload": payload}}


INVALID: dict[str, dict[str, Any]] = {
    "no recipient": {"message": {"text": "hi"}},
    "id and comment_id": {"recipient": {"id": CUSTOMER, "comment_id": "1"}, "message": {}},
    "message and sender_action": text_to(CUSTOMER, sender_action="typing_on"),
    "text and attachment": {
        "recipient": {"id": CUSTOMER},
        "message": {"text": "hi", **_attachment("image", {"url": "https://x/y"})},
    },
    "sticker attachment": {
        "recipient": {"id": CUSTOMER},
        "message": _attachment("sticker", {"url": "https://x/y"}),
    },
    "image without url": {"recipient": {"id": CUSTOMER}, "message": _attachment("image", {})},
    "template without elements": {
        "recipient": {"id": CUSTOMER},
        "message": _attachment("template", {"template_type": "generic", "elements": []}),
    },
    "14 quick replies": {"recipient": {"id": CUSTOMER}, "message": _quick(14)},
    "21-character title": {"recipient": {"id": CUSTOMER}, "message": _quick(1, "x" * 21)},
    "MESSAGE_TAG without tag": text_to(CUSTOMER, messaging_type="MESSAGE_TAG"),
    "tag not HUMAN_AGENT": text_to(CUSTOMER, messaging_type="MESSAGE_TAG", tag="ACCOUNT_UPDATE"),
    "unknown sender_action": {"recipient": {"id": CUSTOMER}, "sender_action": "dance"},
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_malformed_send_bodies_are_code_100(live: Live, case: str) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms())
    resp = live.send(INVALID[case])
    assert resp.status_code == 400
    assert graph_error(resp)["code"] == 100
    assert live.sim.sent == []


def test_well_formed_bodies_of_every_kind_are_accepted(live: Live) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms())
    card = {"title": "Blue sneakers", "buttons": [{"type": "postback", "title": "More"}]}
    template = {"template_type": "generic", "elements": [card]}
    bodies: list[dict[str, Any]] = [
        {"recipient": {"id": CUSTOMER}, "message": _quick(13, "x" * 20)},
        {"recipient": {"id": CUSTOMER}, "message": _attachment("video", {"url": "https://v"})},
        {"recipient": {"id": CUSTOMER}, "message": _attachment("template", template)},
        {"recipient": {"id": CUSTOMER}, "sender_action": "typing_on"},
        {
            "recipient": {"id": CUSTOMER},
            "sender_action": "react",
            "payload": {"message_id": "mid.1", "reaction": "love"},
        },
    ]
    assert [live.send(b).status_code for b in bodies] == [200] * len(bodies)


def test_one_private_reply_per_comment_within_seven_days(live: Live) -> None:
    comment = live.sim.webhooks.comment(CUSTOMER, "ana", "Price?")
    cid = comment["entry"][0]["changes"][0]["value"]["id"]
    reply = {"recipient": {"comment_id": cid}, "message": {"text": "Sent you a DM"}}
    first = live.send(reply)
    assert first.status_code == 200
    assert first.json()["recipient_id"] == cid
    assert graph_error(live.send(reply))["code"] == 10900
    old = live.sim.webhooks.comment(CUSTOMER, "ana", "Still there?")
    old_id = old["entry"][0]["changes"][0]["value"]["id"]
    live.sim.comment_times_ms[old_id] = now_ms() - 8 * DAY_MS
    late = live.send({"recipient": {"comment_id": old_id}, "message": {"text": "Sorry!"}})
    assert graph_error(late)["error_subcode"] == 2534022
    assert len(live.sim.sent) == 1


# -- reads: profiles, mentions, subscriptions ----------------------------------------------------


def test_profile_returns_exactly_the_requested_fields(live: Live) -> None:
    live.sim.add_user(CUSTOMER, "ana.lima", name="Ana Lima", follower_count=1520)
    resp = live.get(f"/v21.0/{CUSTOMER}", fields="name,username,follower_count,profile_pic")
    assert resp.json() == {
        "id": CUSTOMER,
        "name": "Ana Lima",
        "username": "ana.lima",
        "follower_count": 1520,
        "profile_pic": None,
    }
    follows = live.get(f"/v21.0/{CUSTOMER}", fields="is_user_follow_business").json()
    assert follows == {"id": CUSTOMER, "is_user_follow_business": False}
    assert graph_error(live.get(f"/v21.0/{CUSTOMER}", fields="email"))["code"] == 100
    unknown = live.get("/v21.0/404404", fields="name")
    assert unknown.status_code == 400
    assert graph_error(unknown)["code"] == 100


def test_mentioned_comment_lookup(live: Live) -> None:
    live.sim.add_mention("1785001", "Love this @brand 😍", "fan_1", "2026-01-01T10:00:00+0000")
    fields = "mentioned_comment.comment_id(1785001){id,text,timestamp,username}"
    found = live.get(f"/v21.0/{ACCOUNT}", fields=fields).json()
    assert found == {
        "id": ACCOUNT,
        "mentioned_comment": {
            "id": "1785001",
            "text": "Love this @brand 😍",
            "timestamp": "2026-01-01T10:00:00+0000",
            "username": "fan_1",
        },
    }
    only_text = live.get(f"/v21.0/{ACCOUNT}", fields="mentioned_comment.comment_id(1785001){text}")
    assert only_text.json()["mentioned_comment"] == {"text": "Love this @brand 😍"}
    missing = live.get(f"/v21.0/{ACCOUNT}", fields="mentioned_comment.comment_id(9){id}")
    assert graph_error(missing)["code"] == 100

    async def through_the_relay_client() -> str | None:
        client = GraphClient(str(live.http.base_url) + "/v21.0", TOKEN)
        try:
            comment = await client.get_mentioned_comment(ACCOUNT, "1785001")
        finally:
            await client.aclose()
        return comment.username if comment else None

    assert asyncio.run(through_the_relay_client()) == "fan_1"


PAGE = "104000000000042"
IG_TOKEN = "IGAA-test-instagram-login-token"


def test_subscribed_apps_on_the_instagram_edge(live: Live) -> None:
    """Instagram Login: the account's own edge, an Instagram token, Instagram's names."""
    live.sim.add_token(IG_TOKEN, kind="instagram")
    path = f"/v21.0/{ACCOUNT}/subscribed_apps"
    auth = {"access_token": IG_TOKEN}
    assert live.http.get(path, params=auth).json() == {"data": []}
    fields = "messages,message_edit,comments"
    subscribe = live.http.post(path, params={**auth, "subscribed_fields": fields})
    assert subscribe.json() == {"success": True}
    (app,) = live.http.get(path, params=auth).json()["data"]
    assert app["subscribed_fields"] == ["messages", "message_edit", "comments"]
    assert live.sim.page_subscriptions == []
    live.sim.drop_subscription()  # Meta gave up on a failing endpoint
    assert live.http.get(path, params=auth).json() == {"data": []}
    # Page-only names, names that exist only with Facebook Login, and nonsense are refused.
    for bogus in ("feed", "mentions", "messages,everything", ""):
        refused = live.http.post(path, params={**auth, "subscribed_fields": bogus})
        assert refused.status_code == 400
        error = graph_error(refused)
        assert (error["code"], error["type"]) == (100, "OAuthException")
        assert "subscribed_fields" in error["message"]
    live.http.post(path, data={"subscribed_fields": "messages"}, params=auth)  # a form body
    assert live.sim.subscriptions == ["messages"]
    assert live.http.delete(path, params=auth).json() == {"success": True}
    assert live.sim.subscriptions == []


def test_subscribed_apps_on_the_page_edge() -> None:
    """Facebook Login: the linked Page's edge, a Page token, Page field names."""
    sim = MetaSimulator(APP_SECRET, TOKEN, ACCOUNT, page_id=PAGE)
    sim.add_token(IG_TOKEN, kind="instagram")
    with serve_in_thread(sim.app) as server, httpx.Client(base_url=server.url) as http:
        path = f"/v21.0/{PAGE}/subscribed_apps"
        auth = {"access_token": TOKEN}
        done = http.post(path, params={**auth, "subscribed_fields": "feed"})
        assert done.json() == {"success": True}
        (app,) = http.get(path, params=auth).json()["data"]
        assert app["subscribed_fields"] == ["feed"]
        assert sim.page_subscriptions == ["feed"]
        assert sim.subscriptions == []
        # Instagram-only names are not Page fields.
        for bogus in ("comments", "message_edit", "feed,mentions"):
            refused = http.post(path, params={**auth, "subscribed_fields": bogus})
            error = graph_error(refused)
            assert (refused.status_code, error["code"]) == (400, 100), bogus
            assert "subscribed_fields" in error["message"]
        assert sim.page_subscriptions == ["feed"]
        # An Instagram Login token means nothing to a Page.
        wrong_token = http.post(
            path, params={"access_token": IG_TOKEN, "subscribed_fields": "feed"}
        )
        assert graph_error(wrong_token)["code"] == 190
        # A Page token on the Instagram account's edge: that edge is Instagram Login's.
        ig_edge = f"/v21.0/{ACCOUNT}/subscribed_apps"
        old_way = http.post(ig_edge, params={**auth, "subscribed_fields": "messages,comments"})
        error = graph_error(old_way)
        assert (old_way.status_code, error["code"], error["type"]) == (400, 100, "OAuthException")
        assert sim.subscriptions == []
        # A node that is neither.
        elsewhere = http.get("/v21.0/999/subscribed_apps", params=auth)
        assert graph_error(elsewhere)["error_subcode"] == 33


# -- faults ----------------------------------------------------------------------------------


def test_injected_graph_errors_throttles_and_delays(live: Live) -> None:
    live.sim.set_last_customer_message(CUSTOMER, now_ms())
    window = {"error": {"message": "outside", "type": "OAuthException", **WINDOW_ERROR}}
    spec = {"status": 400, "body": window, "path_prefix": SEND}
    assert live.http.post("/_sandbox/faults", json=spec).status_code == 201
    injected = live.send(text_to(CUSTOMER))
    assert (injected.status_code, injected.json()) == (400, window)
    live.sim.faults.add(Fault(status=429, retry_after=2.5, path_prefix=SEND))
    throttled = live.send(text_to(CUSTOMER))
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    live.sim.faults.add(Fault(delay=1.0, status=500, path_prefix=SEND))
    with pytest.raises(httpx.ReadTimeout):
        live.http.post(SEND, json=text_to(CUSTOMER), params={"access_token": TOKEN}, timeout=0.2)
    assert live.send(text_to(CUSTOMER)).status_code == 200
    assert live.sim.faults.injected == 3
    assert len(live.sim.sent) == 1


# -- the media CDN over HTTPS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def cdn(tls: TLSFiles) -> Iterator[tuple[MetaSimulator, ThreadedServer]]:
    sim = MetaSimulator(APP_SECRET, TOKEN, ACCOUNT)
    with serve_in_thread(sim.cdn_app, certfile=tls.cert, keyfile=tls.key) as server:
        yield sim, server


def test_cdn_answers_head_and_one_byte_ranges_over_https(
    cdn: tuple[MetaSimulator, ThreadedServer], tls: TLSFiles
) -> None:
    sim, server = cdn
    image = sim.add_media("5001", "image/jpeg", size=4096)
    sim.add_media("5002", "video/mp4", expired=True)
    assert server.url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=server.url, verify=tls.client_context(), timeout=5) as http:
        head = http.head("/ig_messaging_cdn/5001", params={"signature": "s"})
        assert head.status_code == 200
        assert head.headers["content-type"] == "image/jpeg"
        assert head.headers["content-length"] == "4096"
        assert head.content == b""
        ranged = http.get("/ig_messaging_cdn/5001", headers={"Range": "bytes=0-0"})
        assert ranged.status_code == 206
        assert ranged.headers["content-range"] == "bytes 0-0/4096"
        assert len(ranged.content) == 1
        assert image.requests == [("HEAD", False), ("GET", True)]
        assert image.bytes_served == 1
        by_query = http.head("/ig_messaging_cdn/", params={"asset_id": "5001", "signature": "s"})
        assert by_query.headers["content-type"] == "image/jpeg"
        assert http.get("/ig_messaging_cdn/5001").content == b"\0" * 4096
        assert image.bytes_served == 4097
        assert http.head("/ig_messaging_cdn/5002").status_code == 403
        assert http.head("/ig_messaging_cdn/5003").status_code == 404
        unsatisfiable = http.get("/ig_messaging_cdn/5001", headers={"Range": "bytes=9000-"})
        assert unsatisfiable.status_code == 416
        sim.cdn.faults.add(Fault(status=503, method="HEAD"))
        assert http.head("/ig_messaging_cdn/5001").status_code == 503


def test_cdn_certificate_is_trusted_only_through_the_sandbox_ca(
    cdn: tuple[MetaSimulator, ThreadedServer],
) -> None:
    sim, server = cdn
    sim.add_media("5001", "image/jpeg")
    with httpx.Client(timeout=5) as default_trust, pytest.raises(httpx.ConnectError):
        default_trust.head(f"{server.url}/ig_messaging_cdn/5001")
    assert sim.media["5001"].requests == []


# -- the webhook side --------------------------------------------------------------------------


@dataclass
class Receiver:
    """A stand-in endpoint that keeps exactly what arrived."""

    posts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def app(self, verify_token: str) -> Starlette:
        async def hook(request: Request) -> Response:
            if request.method == "GET":
                q = request.query_params
                if q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == verify_token:
                    return PlainTextResponse(q.get("hub.challenge", ""))
                return PlainTextResponse("forbidden", status_code=403)
            self.posts.append((await request.body(), dict(request.headers)))
            return PlainTextResponse("EVENT_RECEIVED")

        return Starlette(routes=[Route("/webhooks/instagram", hook, methods=["GET", "POST"])])


def test_deliveries_are_escaped_like_meta_and_signed_over_those_bytes(live: Live) -> None:
    receiver = Receiver()
    body = live.sim.webhooks.text(CUSTOMER, "Olá 👋 你好")
    with serve_in_thread(receiver.app("vt")) as server:
        url = f"{server.url}/webhooks/instagram"
        assert live.sim.deliver_webhook(url, body).status_code == 200
        assert live.sim.deliver_webhook(url, b'{"raw":1}', secret="other").status_code == 200
        assert live.sim.verify_webhook(url, "vt", "1158201444").text == "1158201444"
        assert live.sim.verify_webhook(url, "wrong", "1").status_code == 403
    (raw, headers), (raw2, headers2) = receiver.posts
    assert raw.isascii()
    assert b"Ol\\u00e1 \\ud83d\\udc4b \\u4f60\\u597d" in raw
    assert json.loads(raw) == body
    expected = hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == f"sha256={expected}"
    utf8 = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert headers["x-hub-signature-256"] != sign_meta(utf8, APP_SECRET)
    assert raw == encode_like_meta(body)
    assert raw2 == b'{"raw":1}'
    assert headers2["x-hub-signature-256"] == sign_meta(b'{"raw":1}', "other")


Build = Callable[[MetaWebhooks], dict[str, Any]]
SHAPES: dict[str, tuple[Build, EventKind, str]] = {
    "text": (lambda w: w.text("c1", "hi"), EventKind.MESSAGE, "c1"),
    "attachment": (
        lambda w: w.attachment("c1", "image", "https://cdn/x"),
        EventKind.MESSAGE,
        "c1",
    ),
    "story mention": (lambda w: w.story_mention("c1", "https://cdn/s"), EventKind.MESSAGE, "c1"),
    "story reply": (
        lambda w: w.story_reply("c1", "where?", "https://cdn/s"),
        EventKind.MESSAGE,
        "c1",
    ),
    "reply to": (lambda w: w.reply_to("c1", "this one", "mid.0"), EventKind.MESSAGE, "c1"),
    "quick reply": (lambda w: w.quick_reply("c1", "Track", "TRACK"), EventKind.MESSAGE, "c1"),
    "postback": (lambda w: w.postback("c1", "Agent", "AGENT"), EventKind.POSTBACK, "c1"),
    "reaction": (lambda w: w.reaction("c1", "mid.0"), EventKind.REACTION, "c1"),
    "unreaction": (
        lambda w: w.reaction("c1", "mid.0", action="unreact"),
        EventKind.REACTION,
        "c1",
    ),
    "seen": (lambda w: w.seen("c1", "mid.0"), EventKind.SEEN, "c1"),
    "referral": (lambda w: w.referral("c1", "summer", ad_id="238"), EventKind.REFERRAL, "c1"),
    "echo": (lambda w: w.echo("c1", "from the brand"), EventKind.ECHO, "c1"),
    "unsend": (lambda w: w.unsend("c1", "mid.0"), EventKind.UNSEND, "c1"),
    "comment": (lambda w: w.comment("c2", "fan", "Blue?"), EventKind.COMMENT, "c2"),
    "mention": (
        lambda w: w.mention("18000001", "1785009"),
        EventKind.MENTION,
        "ig-mention-18000001",
    ),
}
OPENS_WINDOW = {"text", "attachment", "story mention", "story reply", "reply to", "quick reply"}
OPENS_WINDOW |= {"postback", "referral"}


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_builders_make_events_the_relay_understands(shape: str) -> None:
    moved: list[tuple[str, int]] = []
    hooks = MetaWebhooks(ACCOUNT, on_customer=lambda who, ms: moved.append((who, ms)))
    build, kind, customer = SHAPES[shape]
    body = build(hooks)
    assert body["object"] == "instagram"
    assert body["entry"][0]["id"] == ACCOUNT
    parsed = parse_webhook(json.loads(encode_like_meta(body)), ACCOUNT)
    assert parsed.skipped == []
    (event,) = parsed.events
    assert (event.kind, event.customer_id) == (kind, customer)
    assert [who for who, _ in moved] == (["c1"] if shape in OPENS_WINDOW else [])


def test_batches_join_entries() -> None:
    hooks = MetaWebhooks(ACCOUNT)
    body = hooks.batch(hooks.text("c1", "one", mid="m1"), hooks.comment("c2", "fan", "two"))
    kinds = [e.kind for e in parse_webhook(body, ACCOUNT).events]
    assert kinds == [EventKind.MESSAGE, EventKind.COMMENT]
    assert body["entry"][0]["messaging"][0]["message"]["mid"] == "m1"
