"""Every request body the relay and the operator send Genesys, judged by Genesys's own SDK.

The models of ``purecloudplatformclientv2`` (through igbridge.sandbox.genesys_schema) are
generated from Genesys's API definition: a body they refuse is one Genesys refuses. The
relay sends no inbound typing events, so OpenInboundNormalizedEvent is covered only by
the simulator's own route test below.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest

from igbridge.operator.integrations import Integrations
from igbridge.relay.config import Settings
from igbridge.relay.genesys import payloads
from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.client import GenesysClient
from igbridge.relay.genesys.rest import JSON_UTF8, GenesysRest, encode_json
from igbridge.relay.http import Answer, fetch
from igbridge.relay.meta.events import parse_webhook
from igbridge.relay.pipeline import addressing, outbound, receipts
from igbridge.relay.pipeline.inbound import NotForwarded, build
from igbridge.sandbox import genesys_schema
from igbridge.sandbox.genesys_schema import allowed_values, violations
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.server import ThreadedServer, serve_in_thread
from tests.fixtures_loader import ACCOUNT_ID, FIXTURES, fixture_names, load_fixture_json
from tests.test_inbound_build import facts_for

T = TypeVar("T")
MESSAGE = "OpenInboundNormalizedMessage"
STRUCTURED = "OpenInboundStructuredResponseMessage"
RECEIPT = "OpenInboundNormalizedReceipt"
INTEGRATION = "sandbox-integration"
INBOUND = f"/api/v2/conversations/messages/{INTEGRATION}/inbound/open"
CUSTOMER = "6915500000000001"
SECRET = "a-signing-secret-longer-than-15"


def model_of(body: dict[str, Any]) -> str:
    """Which route a built body goes to: a structured response carries ``buttonResponse``."""
    return STRUCTURED if "buttonResponse" in body else MESSAGE


# -- inbound messages: every Instagram shape ------------------------------------------------


@pytest.mark.parametrize("name", fixture_names())
def test_every_instagram_shape_builds_a_body_genesys_accepts(name: str) -> None:
    events = parse_webhook(load_fixture_json(name), account_id=ACCOUNT_ID).events
    for event in events:
        result = build(event, facts_for(event))
        if isinstance(result, NotForwarded):
            continue
        body = result.body()
        assert violations(model_of(body), body) == [], (name, event.dedupe_key)
        # What goes on the wire is that body, byte for byte as ``encode_json`` writes it.
        assert result.encoded() == encode_json(body), (name, event.dedupe_key)


@pytest.mark.parametrize("name", fixture_names())
def test_every_expected_genesys_body_is_valid(name: str) -> None:
    rows = json.loads((FIXTURES / "expected" / f"{name}.json").read_text("utf-8"))
    for row in rows:
        if "genesys" in row:
            assert violations(model_of(row["genesys"]), row["genesys"]) == [], row["event"]


def test_unchecked_attachments_still_carry_a_mime() -> None:
    """Shares, reels, posts and expired stories: the CDN vouched for nothing, yet Genesys
    requires ``mime`` (the fixtures above include them; this says so by name)."""
    for name in ("share", "ig_post", "reel", "template", "fallback", "story_reply"):
        for row in json.loads((FIXTURES / "expected" / f"{name}.json").read_text("utf-8")):
            for item in row.get("genesys", {}).get("content", []):
                assert item["attachment"]["mime"], name


def test_a_structured_response_as_the_relay_builds_it() -> None:
    channel = payloads.InboundChannel(
        message_id="mid.qr.1", time="2026-01-01T10:00:00.000Z", from_=payloads.From(id=CUSTOMER)
    )
    answer = payloads.ButtonResponse(type="QuickReply", text="Yes", payload="YES")
    model = getattr(payloads, "StructuredResponse", None)
    if model is not None:
        built = model(channel=channel, button_response=answer, originating_message_id="out-1")
        body = built.body()
        assert built.encoded() == encode_json(body)
    else:  # the shape of OpenInboundStructuredResponseMessage, built from the relay's parts
        body = {
            "channel": channel.model_dump(mode="json", exclude_none=True, by_alias=True),
            "buttonResponse": answer.model_dump(mode="json", by_alias=True),
            "originatingMessageId": "out-1",
        }
    assert violations(STRUCTURED, body) == []


# -- against the simulator over HTTP: receipts, routing, the operator's provisioning ------


@pytest.fixture
def live() -> Iterator[tuple[GenesysSimulator, ThreadedServer]]:
    sim = GenesysSimulator(integration_ids=INTEGRATION, create_delay=0.0)
    with serve_in_thread(sim.app) as server:
        yield sim, server


def capture(
    server: ThreadedServer, fn: Callable[[aiohttp.ClientSession, TokenProvider], Awaitable[T]]
) -> tuple[T, list[tuple[str, str, Any]]]:
    """Run ``fn`` with a session whose every request body is recorded as sent."""
    sent: list[tuple[str, str, Any]] = []

    async def record(
        _: aiohttp.ClientSession, __: object, sent_chunk: aiohttp.TraceRequestChunkSentParams
    ) -> None:
        if sent_chunk.chunk and sent_chunk.url.path != "/oauth/token":
            body = json.loads(sent_chunk.chunk)
            sent.append((sent_chunk.method, sent_chunk.url.path, body))

    async def main() -> T:
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(record)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout, trace_configs=[trace]) as http:
            tokens = TokenProvider(http, server.url, "sandbox-client", "sandbox-client-secret")
            return await fn(http, tokens)

    return asyncio.run(main()), sent


def relay_reason_codes() -> set[str]:
    """Every receipt reason code the relay's pipeline can give."""
    codes = {
        value
        for module in (receipts, outbound, addressing)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and value.isalpha() and value[0].isupper()
    }
    codes |= {
        value.code
        for module in (receipts, outbound, addressing)
        for value in vars(module).values()
        if isinstance(value, receipts.Refusal)
    }
    return codes


def test_the_relay_names_only_reason_codes_genesys_defines() -> None:
    codes = relay_reason_codes()
    assert {"MessageExpired", "GeneralError", "MediaTypeNotAllowed"} <= codes
    assert codes <= set(allowed_values("ConversationReason", "code") or ())


def test_receipts_of_every_status_and_reason_are_accepted(
    live: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    sim, server = live
    codes = sorted(relay_reason_codes())

    async def send(http: aiohttp.ClientSession, tokens: TokenProvider) -> None:
        client = GenesysClient(http, server.url, INTEGRATION, tokens)
        when = "2026-01-01T10:00:00.000Z"
        await client.send_receipt("out-ok", CUSTOMER, "Delivered", time=when)
        for code in codes:
            reason = [{"code": code, "message": "why, for the agent"}]
            await client.send_receipt(f"out-{code}", CUSTOMER, "Failed", time=when, reasons=reason)

    _, sent = capture(server, send)
    assert len(sim.receipts) == 1 + len(codes)  # none refused
    assert len(sent) == len(sim.receipts)
    for _, _, body in sent:
        assert violations(RECEIPT, body) == []
        assert "direction" not in body


def test_the_escalation_priority_patch_is_valid(
    live: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    sim, server = live
    priority = Settings.model_fields["window_priority"].default
    # The SLA sweeper's body (tasks/sla.py); the conversation must exist in the simulator.
    first = {
        "channel": {
            "messageId": "m1",
            "time": "2026-01-01T10:00:00.000Z",
            "from": {"id": CUSTOMER, "idType": "Opaque"},
        },
        "text": "hi",
    }

    async def send(http: aiohttp.ClientSession, tokens: TokenProvider) -> None:
        rest = GenesysRest(http, server.url, tokens)
        accepted = await rest.request(
            "POST", f"{INBOUND}/message", first, params={"prefetchConversationId": "true"}
        )
        conv = accepted["conversationId"]
        await rest.request("PATCH", f"/api/v2/routing/conversations/{conv}", {"priority": priority})

    _, sent = capture(server, send)
    assert [p for _, p in sim.priority_changes] == [priority]
    assert violations("RoutingConversationAttributesRequest", sent[-1][2]) == []


def test_the_operators_provisioning_bodies_are_valid(
    live: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    sim, server = live

    async def provision(http: aiohttp.ClientSession, tokens: TokenProvider) -> None:
        client = Integrations(GenesysRest(http, server.url, tokens))
        created = await client.create(
            "igbridge-shop",
            "https://shop.example.com/webhooks/genesys",
            SECRET,
            supported_content_id="sc-1",
            messaging_setting_id="ms-1",
        )
        settled = await client.wait_created(created["id"], within=2.0, poll=0.01)
        # Drift repair without a rename: the name must still go along.
        await client.update(
            created["id"], {"outboundNotificationWebhookUrl": "https://x.example/h"}
        )
        await client.attach_flow(settled["recipient"]["id"], "flow-1")

    _, sent = capture(server, provision)
    models = {
        "POST": "OpenIntegrationRequest",
        "PATCH": "OpenIntegrationUpdateRequest",
        "PUT": "RecipientRequest",
    }
    assert sorted(method for method, _, _ in sent) == ["PATCH", "POST", "PUT"]
    for method, _, body in sent:
        assert violations(models[method], body) == [], method
    (patch,) = [body for method, _, body in sent if method == "PATCH"]
    assert patch["name"] == "igbridge-shop"
    assert list(sim.flow_assignments.values()) == ["flow-1"]


# -- the validator refuses what Genesys refuses ---------------------------------------------


def valid_message() -> dict[str, Any]:
    return {
        "channel": {
            "messageId": "m1",
            "time": "2026-01-01T10:00:00.000Z",
            "from": {"id": CUSTOMER, "idType": "Opaque"},
            "metadata": {"customAttributes": {"Source": "Instagram_DM"}},
        },
        "content": [{"attachment": {"mediaType": "Image", "url": "https://x/y", "mime": "a/b"}}],
    }


def edited(path: list[str | int], value: Any) -> dict[str, Any]:
    body = valid_message()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


DELETE = object()
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unknown field at depth": (
        edited(["content", 0, "contentType"], "Attachment"),
        "content[0].contentType: unknown field",
    ),
    "wrong type": (edited(["channel", "from", "id"], 42), "channel.from.id: expected str"),
    "bad enum value": (
        edited(["content", 0, "attachment", "mediaType"], "Sticker"),
        "content[0].attachment.mediaType: 'Sticker' is not one of",
    ),
    "missing required field": (
        edited(["content", 0, "attachment", "mime"], DELETE),
        "content[0].attachment.mime: required field missing",
    ),
    "not a date-time": (edited(["channel", "time"], "yesterday"), "channel.time: expected"),
    "custom attribute not a string": (
        edited(["channel", "metadata", "customAttributes", "Followers"], 12),
        'channel.metadata.customAttributes["Followers"]: expected str',
    ),
}


def test_the_valid_message_is_valid() -> None:
    assert violations(MESSAGE, valid_message()) == []


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_the_validator_refuses(case: str) -> None:
    body, reason = BAD[case]
    found = violations(MESSAGE, body)
    assert len(found) == 1
    assert found[0].startswith(reason)


# One invalid body per route (unknown field, wrong type, bad enum, missing field), with
# where the violation is reported.
ROUTE_CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "message": ("POST", f"{INBOUND}/message", BAD["unknown field at depth"][0], "contentType"),
    "receipt": (
        "POST",
        f"{INBOUND}/receipt",
        {
            "id": "out-1",
            "channel": {"to": {"id": CUSTOMER}, "time": "2026-01-01T10:00:00Z"},
            "status": "Read",
        },
        "status: 'Read' is not one of",
    ),
    "event": (
        "POST",
        f"{INBOUND}/event",
        {
            "channel": {"from": {"id": CUSTOMER, "idType": "Opaque"}, "time": "2026-01-01T10:00Z"},
            "events": [{"eventType": "Typing", "typing": {"type": "On"}}],
        },
        "events[0].typing: unknown field",
    ),
    "structured response": (
        "POST",
        f"{INBOUND}/structured/response",
        {
            "channel": valid_message()["channel"],
            "buttonResponse": {"type": "QuickReply", "text": "Yes", "payload": "Y"},
        },
        "originatingMessageId: required field missing",
    ),
    "integration create": (
        "POST",
        "/api/v2/conversations/messaging/integrations/open",
        {"name": "x", "outboundNotificationWebhookUrl": "https://x.example/h"},
        "outboundNotificationWebhookSignatureSecretToken: required field missing",
    ),
    "recipient flow": (
        "PUT",
        "/api/v2/routing/message/recipients/r-1",
        {"flow": {"id": 7}},
        "flow.id: expected str",
    ),
    "routing priority": (
        "PATCH",
        "/api/v2/routing/conversations/c-1",
        {"priority": "high"},
        "priority: expected int",
    ),
}


@pytest.mark.parametrize("case", ROUTE_CASES, ids=list(ROUTE_CASES))
def test_the_simulator_answers_400_naming_the_violation(
    live: tuple[GenesysSimulator, ThreadedServer], case: str
) -> None:
    sim, server = live
    method, path, body, reason = ROUTE_CASES[case]
    token = httpx.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sim.client_id, sim.client_secret),
    ).json()["access_token"]
    resp = httpx.request(
        method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "bad.request"
    assert reason in resp.json()["message"]


def test_an_integration_patch_without_a_name_is_refused(
    live: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    _, server = live

    async def steps(http: aiohttp.ClientSession, tokens: TokenProvider) -> Answer:
        rest = GenesysRest(http, server.url, tokens)
        created = await rest.request(
            "POST",
            "/api/v2/conversations/messaging/integrations/open",
            {
                "name": "n",
                "outboundNotificationWebhookUrl": "https://x.example/h",
                **{"outboundNotificationWebhookSignatureSecretToken": SECRET},
            },
        )
        return await fetch(
            http,
            "PATCH",
            f"{server.url}/api/v2/conversations/messaging/integrations/open/{created['id']}",
            data=json.dumps({"outboundNotificationWebhookUrl": "https://y.example/h"}).encode(),
            headers={"Authorization": f"Bearer {await tokens.token()}", "Content-Type": JSON_UTF8},
        )

    resp, _ = capture(server, steps)
    assert resp.status == 400
    assert "name: required field missing" in resp.json()["message"]


def test_the_sdk_watches_no_folder_and_leaves_home_alone() -> None:
    """Its import would otherwise watch all of $HOME recursively (no config folder there)."""
    home = os.environ.get("HOME")
    configuration = genesys_schema.sdk().configuration
    assert configuration.live_reload_config is False
    assert configuration._observer is None
    assert not [t for t in threading.enumerate() if "Inotify" in t.name]
    assert os.environ.get("HOME") == home
