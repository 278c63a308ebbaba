"""The Genesys Cloud simulator over real HTTP: OAuth, the inbound contract, conversations,
faults, integrations, and the signed outbound webhooks it sends as an agent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from igbridge.relay.genesys.outbound import parse_outbound
from igbridge.relay.web.signature import SignatureCheck, verify_genesys_signature
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_agent import (
    encode_agent_message,
    post_agent_message_async,
    sign_genesys,
)
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.server import serve_in_thread

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-client-secret-0123"
INTEGRATION = "int-a"
OTHER_INTEGRATION = "int-b"
INBOUND = f"/api/v2/conversations/messages/{INTEGRATION}/inbound/open"
INTEGRATIONS = "/api/v2/conversations/messaging/integrations/open"
WEBHOOK_SECRET = "agent-webhook-secret-0123456789"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Live:
    sim: GenesysSimulator
    http: httpx.Client
    clock: Clock

    def grant(
        self,
        client_id: str = CLIENT_ID,
        secret: str = CLIENT_SECRET,
        grant_type: str = "client_credentials",
    ) -> httpx.Response:
        return self.http.post(
            "/oauth/token", data={"grant_type": grant_type}, auth=(client_id, secret)
        )

    def token(self) -> str:
        resp = self.grant()
        assert resp.status_code == 200, resp.text
        token: str = resp.json()["access_token"]
        return token

    def post(
        self,
        path: str,
        body: dict[str, Any] | bytes,
        token: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        headers["Authorization"] = f"Bearer {token or self.token()}"
        return self.http.post(path, content=raw, headers=headers, params=params)


@pytest.fixture
def live() -> Iterator[Live]:
    clock = Clock(1_800_000_000.0)
    sim = GenesysSimulator(
        CLIENT_ID,
        CLIENT_SECRET,
        (INTEGRATION, OTHER_INTEGRATION),
        token_ttl=3600,
        create_delay=5.0,
        clock=clock,
    )
    with serve_in_thread(sim.app) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        yield Live(sim, http, clock)


def message(mid: str = "mid-1", sender: str = "6915500000000001", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": {
            "messageId": mid,
            "time": "2026-01-01T10:00:00.000Z",
            "from": {"id": sender, "idType": "Opaque", "nickname": "ana"},
            "metadata": {"customAttributes": {"Source": "Instagram_DM"}},
        },
        "text": "Olá 👋",
    }
    body.update(extra)
    return body


# -- OAuth -----------------------------------------------------------------------------------


def test_token_grant_and_rejections(live: Live) -> None:
    ok = live.grant()
    assert ok.status_code == 200
    grant = ok.json()
    assert grant["token_type"] == "bearer"
    assert grant["expires_in"] == 3600
    assert grant["access_token"]
    assert live.grant(secret="wrong-secret").status_code == 401
    assert live.grant(client_id="someone-else").status_code == 401
    no_client_auth = live.http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert no_client_auth.status_code == 401
    bad_grant = live.grant(grant_type="password")
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "unsupported_grant_type"
    assert live.sim.token_grants == 1
    assert CLIENT_SECRET not in live.grant(secret="wrong-secret").text


def test_revoked_and_expired_tokens_are_refused(live: Live) -> None:
    token = live.token()
    assert live.post(f"{INBOUND}/message", message("m1"), token).status_code == 200
    live.sim.revoke_tokens()
    refused = live.post(f"{INBOUND}/message", message("m2"), token)
    assert refused.status_code == 401
    assert refused.json()["status"] == 401
    fresh = live.token()
    assert live.post(f"{INBOUND}/message", message("m2"), fresh).status_code == 200
    live.clock.now += 3601  # past expires_in
    assert live.post(f"{INBOUND}/message", message("m3"), fresh).status_code == 401
    assert live.sim.token_grants == 2
    assert [m.message_id for m in live.sim.snapshot()] == ["m1", "m2"]


# -- inbound messages ------------------------------------------------------------------------


def test_inbound_message_is_accepted_and_recorded_as_sent(live: Live) -> None:
    body = message("mid-ok")
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    resp = live.post(f"{INBOUND}/message", raw)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["id"]
    assert answer["channel"]["messageId"] == "mid-ok"
    assert answer["channel"]["from"]["id"] == "6915500000000001"
    assert "conversationId" not in answer  # only when prefetched
    (got,) = live.sim.wait_for_messages(1, timeout=5)
    assert got.raw == raw
    assert got.body == body
    assert got.text == "Olá 👋"
    assert got.content_type == "application/json; charset=utf-8"
    assert got.attributes == {"Source": "Instagram_DM"}
    assert got.integration_id == INTEGRATION
    listed = live.http.get("/_sandbox/messages").json()
    assert [m["body"]["channel"]["messageId"] for m in listed] == ["mid-ok"]
    assert listed[0]["contentType"] == "application/json; charset=utf-8"


def test_attachment_message_is_accepted(live: Live) -> None:
    att = {"mediaType": "Image", "url": "https://cdn.example/a", "mime": "image/jpeg"}
    body = message("mid-att", content=[{"attachment": att}])
    del body["text"]
    assert live.post(f"{INBOUND}/message", body).status_code == 200


def _without(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


def _setting(value: Any, *path: str) -> Callable[[dict[str, Any]], None]:
    def edit(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _attachment(**att: Any) -> Callable[[dict[str, Any]], None]:
    return _setting([{"attachment": att}], "content")


Edit = Callable[[dict[str, Any]], None] | bytes
REJECTED: dict[str, tuple[Edit, str]] = {
    "not UTF-8": (b'{"text": "\xff"}', "UTF-8 JSON"),
    "not JSON": (b'{"text": ', "UTF-8 JSON"),
    "no from.id": (_without("channel", "from", "id"), "channel.from.id: required field missing"),
    "empty from.id": (_setting("", "channel", "from", "id"), "channel.from.id"),
    "no from.idType": (_without("channel", "from", "idType"), "channel.from.idType: required"),
    "unknown idType": (_setting("Instagram", "channel", "from", "idType"), "idType"),
    "no time": (_without("channel", "time"), "channel.time: required field missing"),
    "time not ISO-8601": (_setting("yesterday 10am", "channel", "time"), "channel.time"),
    "unknown field": (_setting("Outbound", "direction"), "direction: unknown field"),
    "neither text nor content": (_without("text"), "text or content"),
    "top-level customAttributes": (
        _setting({"customAttributes": {"a": "b"}}, "metadata"),
        "customAttributes",
    ),
    "nested customAttributes": (
        _setting({"a": {"b": "c"}}, "channel", "metadata", "customAttributes"),
        "customAttributes",
    ),
    "non-string customAttribute": (
        _setting({"followers": 12}, "channel", "metadata", "customAttributes"),
        "customAttributes",
    ),
    "unknown mediaType": (
        _attachment(mediaType="Sticker", url="https://x/y", mime="image/webp"),
        "content[0].attachment.mediaType",
    ),
    "attachment without url": (
        _attachment(mediaType="Image", mime="image/jpeg"),
        "content[0].attachment.url: required field missing",
    ),
    "attachment without mime": (
        _attachment(mediaType="Image", url="https://x/y"),
        "content[0].attachment.mime: required field missing",
    ),
    "contentType in a content item": (
        _setting(
            [{"contentType": "Attachment", "attachment": {"mediaType": "Link", "url": "u"}}],
            "content",
        ),
        "content[0].contentType: unknown field",
    ),
}


@pytest.mark.parametrize("case", REJECTED, ids=list(REJECTED))
def test_documented_rejections_answer_400_with_a_reason(live: Live, case: str) -> None:
    edit, reason = REJECTED[case]
    if isinstance(edit, bytes):
        body: dict[str, Any] | bytes = edit
    else:
        body = message()
        edit(body)
    resp = live.post(f"{INBOUND}/message", body)
    assert resp.status_code == 400
    error = resp.json()
    assert error["code"] == "bad.request"
    assert error["status"] == 400
    assert reason in error["message"]
    assert live.sim.snapshot() == []


def test_unknown_integration_and_missing_bearer(live: Live) -> None:
    unknown = live.post("/api/v2/conversations/messages/nope/inbound/open/message", message())
    assert unknown.status_code == 404
    anonymous = live.http.post(f"{INBOUND}/message", json=message())
    assert anonymous.status_code == 401
    assert live.sim.snapshot() == []


def test_prefetched_conversation_ids_are_stable_per_customer(live: Live) -> None:
    token = live.token()
    prefetch = {"prefetchConversationId": "true"}

    def conversation(mid: str, sender: str, inbound: str = INBOUND) -> str:
        resp = live.post(f"{inbound}/message", message(mid, sender), token, prefetch)
        assert resp.status_code == 200
        conv: str = resp.json()["conversationId"]
        return conv

    first = conversation("m1", "ana")
    assert conversation("m2", "ana") == first
    assert conversation("m3", "bob") != first
    other = f"/api/v2/conversations/messages/{OTHER_INTEGRATION}/inbound/open"
    assert conversation("m4", "ana", other) != first
    assert live.sim.conversation_id("ana") == first
    live.sim.end_conversation("ana")
    assert conversation("m5", "ana") not in (first, None)
    # A conversation opened without a message is the one the customer's message joins.
    opened = live.sim.open_conversation("cleo")
    assert live.sim.open_conversation("cleo") == opened
    assert conversation("m6", "cleo") == opened


# -- receipts, events, structured responses, routing ------------------------------------------


def test_receipts_events_and_structured_responses(live: Live) -> None:
    token = live.token()
    receipt = {
        "id": "outbound-1",
        "channel": {"to": {"id": "ana", "idType": "Opaque"}, "time": "2026-01-01T10:00:01.000Z"},
        "status": "Failed",
        "isFinalReceipt": True,
        "reasons": [{"code": "MessageExpired", "message": "outside the 24-hour window"}],
    }
    assert live.post(f"{INBOUND}/receipt", receipt, token).status_code == 200
    bad_reason = {**receipt, "reasons": [{"code": "Oops", "message": "?"}]}
    assert live.post(f"{INBOUND}/receipt", bad_reason, token).status_code == 400
    directed = {**receipt, "direction": "Outbound"}  # not in OpenInboundNormalizedReceipt
    assert "direction: unknown field" in live.post(f"{INBOUND}/receipt", directed, token).text
    assert live.post(f"{INBOUND}/receipt", {**receipt, "status": "Lost"}, token).status_code == 400
    assert live.post(f"{INBOUND}/receipt", {**receipt, "channel": {}}, token).status_code == 400
    assert live.sim.receipts == [receipt]

    typing = {
        "channel": {"from": {"id": "ana", "idType": "Opaque"}, "time": "2026-01-01T10:00:00Z"},
        "events": [{"eventType": "Typing"}],  # OpenEvent has no other field
    }
    assert live.post(f"{INBOUND}/event", typing, token).status_code == 200
    assert live.post(f"{INBOUND}/event", {**typing, "events": []}, token).status_code == 400
    assert live.sim.events == [typing]

    answer: dict[str, Any] = {
        "channel": message("qr-1")["channel"],
        "buttonResponse": {"type": "QuickReply", "text": "Yes", "payload": "Y"},
        "originatingMessageId": "outbound-1",
    }
    assert live.post(f"{INBOUND}/structured/response", answer, token).status_code == 200
    answer["buttonResponse"]["type"] = "Swipe"
    assert live.post(f"{INBOUND}/structured/response", answer, token).status_code == 400
    as_message = message("qr-2", content=[{"buttonResponse": {"type": "QuickReply"}}])
    refused = live.post(f"{INBOUND}/structured/response", as_message, token)
    assert "originatingMessageId: required field missing" in refused.json()["message"]
    assert [b["channel"]["messageId"] for b in live.sim.structured] == ["qr-1"]
    assert [m.endpoint for m in live.sim.snapshot()] == ["structured/response"]


def test_routing_priority_only_for_known_conversations(live: Live) -> None:
    token = live.token()
    resp = live.post(f"{INBOUND}/message", message(), token, {"prefetchConversationId": "true"})
    conv = resp.json()["conversationId"]
    headers = {"Authorization": f"Bearer {token}"}
    route = "/api/v2/routing/conversations/"
    raised = live.http.patch(route + conv, json={"priority": 1200}, headers=headers)
    assert raised.status_code == 200
    too_high = live.http.patch(route + conv, json={"priority": 25_000_001}, headers=headers)
    assert too_high.status_code == 400
    unknown = live.http.patch(route + "nope", json={"priority": 5}, headers=headers)
    assert unknown.status_code == 404
    assert live.http.patch(route + conv, json={"priority": 5}).status_code == 401
    assert live.sim.priority_changes == [(conv, 1200)]


# -- integrations ----------------------------------------------------------------------------


def test_integration_lifecycle(live: Live) -> None:
    token = live.token()
    auth = {"Authorization": f"Bearer {token}"}
    spec = {
        "name": "instagram-shop",
        "outboundNotificationWebhookUrl": "https://relay.example/webhooks/genesys",
        "outboundNotificationWebhookSignatureSecretToken": WEBHOOK_SECRET,
        "webhookHeaders": {},
    }
    short_secret = {**spec, "outboundNotificationWebhookSignatureSecretToken": "short"}
    assert live.post(INTEGRATIONS, short_secret, token).status_code == 400
    plain_http = {**spec, "outboundNotificationWebhookUrl": "http://relay.example/x"}
    assert live.post(INTEGRATIONS, plain_http, token).status_code == 400

    created = live.post(INTEGRATIONS, spec, token).json()
    iid, recipient = created["id"], created["recipient"]["id"]
    assert created["createStatus"] == "Initiated"
    assert WEBHOOK_SECRET not in json.dumps(created)  # write-only, like Genesys

    def status() -> str:
        current: str = live.http.get(f"{INTEGRATIONS}/{iid}", headers=auth).json()["createStatus"]
        return current

    assert status() == "Initiated"
    live.clock.now += 5
    assert status() == "Completed"
    listed = live.http.get(INTEGRATIONS, headers=auth).json()["entities"]
    assert [i["name"] for i in listed] == ["instagram-shop"]

    inbound = f"/api/v2/conversations/messages/{iid}/inbound/open/message"
    assert live.post(inbound, message(), token).status_code == 200
    renamed = live.http.patch(f"{INTEGRATIONS}/{iid}", json={"name": "shop-2"}, headers=auth)
    assert renamed.json()["name"] == "shop-2"
    read_only = live.http.patch(f"{INTEGRATIONS}/{iid}", json={"id": "x"}, headers=auth)
    assert read_only.status_code == 400

    flow = {"flow": {"id": "flow-1"}}
    recipients = "/api/v2/routing/message/recipients/"
    assert live.http.put(recipients + recipient, json=flow, headers=auth).status_code == 200
    assert live.http.put(recipients + "nobody", json=flow, headers=auth).status_code == 404
    assert live.sim.flow_assignments == {recipient: "flow-1"}

    assert live.http.delete(f"{INTEGRATIONS}/{iid}", headers=auth).status_code == 204
    assert live.http.get(f"{INTEGRATIONS}/{iid}", headers=auth).status_code == 404
    assert live.post(inbound, message("after-delete"), token).status_code == 404


# -- faults ----------------------------------------------------------------------------------


def test_injected_429_with_retry_after_over_http_control(live: Live) -> None:
    fault = {"status": 429, "retry_after": 7, "path_prefix": INBOUND + "/message"}
    assert live.http.post("/_sandbox/faults", json=fault).status_code == 201
    token = live.token()  # other paths are not affected
    limited = live.post(f"{INBOUND}/message", message("m1"), token)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert live.post(f"{INBOUND}/message", message("m1"), token).status_code == 200
    assert live.http.get("/_sandbox/faults").json() == {"pending": [], "injected": 1}
    assert [m.message_id for m in live.sim.snapshot()] == ["m1"]


def test_injected_500s_are_used_up_then_cleared(live: Live) -> None:
    token = live.token()
    live.sim.faults.add(Fault(status=500, count=2, path_prefix="/api/v2/"))
    codes = [live.post(f"{INBOUND}/message", message(f"m{i}"), token).status_code for i in range(3)]
    assert codes == [500, 500, 200]
    live.sim.faults.add(Fault(status=503, count=100, path_prefix="/api/v2/", method="post"))
    assert live.http.delete("/_sandbox/faults").status_code == 200
    assert live.post(f"{INBOUND}/message", message("m9"), token).status_code == 200


def test_faults_match_method_and_never_hit_control_routes(live: Live) -> None:
    token = live.token()
    auth = {"Authorization": f"Bearer {token}"}
    live.sim.faults.add(Fault(status=503, count=5, method="GET"))
    assert live.http.get("/_sandbox/messages").status_code == 200
    assert live.http.get("/_sandbox/faults").status_code == 200
    assert live.post(f"{INBOUND}/message", message(), token).status_code == 200
    assert live.http.get(INTEGRATIONS, headers=auth).status_code == 503
    assert live.sim.faults.injected == 1


def test_injected_delay_times_a_client_out(live: Live) -> None:
    live.sim.faults.add(Fault(delay=1.0, status=504, path_prefix="/oauth/token"))
    with pytest.raises(httpx.ReadTimeout):
        live.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=0.2,
        )
    assert live.grant().status_code == 200


@pytest.mark.parametrize(
    "spec", [{"status": "soon"}, {"count": 0}, {"bogus": 1}, {"delay": -1}, ["status", 500]]
)
def test_malformed_fault_specs_are_refused(live: Live, spec: Any) -> None:
    assert live.http.post("/_sandbox/faults", json=spec).status_code == 400
    assert live.sim.faults.pending() == []


# -- observation -----------------------------------------------------------------------------


def test_waiting_for_messages_and_listing_them_incrementally(live: Live) -> None:
    token = live.token()
    for i in range(3):
        live.post(f"{INBOUND}/message", message(f"m{i}"), token)
    assert [m.message_id for m in live.sim.wait_for_messages(3, timeout=5)] == ["m0", "m1", "m2"]
    assert live.sim.wait_for(3, timeout=1)
    assert not live.sim.wait_for(4, timeout=0.05)
    later = live.http.get("/_sandbox/messages", params={"since": "2"}).json()
    assert [m["body"]["channel"]["messageId"] for m in later] == ["m2"]


# -- the agent's side: outbound webhooks -------------------------------------------------------


@dataclass
class Received:
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.requests.append((await request.body(), dict(request.headers)))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/webhooks/genesys", hook, methods=["POST"])])


def test_signature_is_base64_hmac_of_the_bytes() -> None:
    raw = '{"text":"Olá"}'.encode()
    expected = base64.b64encode(hmac.new(b"s3cret", raw, hashlib.sha256).digest()).decode()
    assert sign_genesys(raw, "s3cret") == "sha256=" + expected


def test_agent_messages_arrive_signed_and_parseable(live: Live) -> None:
    received = Received()
    text_msg = live.sim.build_agent_message("ana", "Hi, this is Sam 🙂")
    typing = live.sim.build_agent_typing("ana")
    with serve_in_thread(received.app()) as hook:
        url = f"{hook.url}/webhooks/genesys"
        assert live.sim.post_agent_message(url, text_msg, WEBHOOK_SECRET).status_code == 200
        sent = asyncio.run(post_agent_message_async(url, typing, WEBHOOK_SECRET))
        assert sent.status_code == 200
    (raw, headers), (typing_raw, _) = received.requests
    assert raw == encode_agent_message(text_msg)
    assert "🙂".encode() in raw  # characters as themselves
    check = verify_genesys_signature(raw, headers["x-hub-signature-256"], WEBHOOK_SECRET.encode())
    assert check is SignatureCheck.OK
    parsed = parse_outbound(raw)
    assert not isinstance(parsed, str)
    assert (parsed.type, parsed.customer_id, parsed.text) == ("Text", "ana", "Hi, this is Sam 🙂")
    assert parsed.channel.id == INTEGRATION
    assert parsed.channel.time is not None
    assert parsed.channel.time.endswith("Z")
    typing_parsed = parse_outbound(typing_raw)
    assert not isinstance(typing_parsed, str)
    assert typing_parsed.type == "Event"
    assert typing_parsed.text is None
    assert typing_parsed.events[0].event_type == "Typing"
