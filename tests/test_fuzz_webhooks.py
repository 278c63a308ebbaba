"""Bounded fuzzing of both webhook routes over real HTTP: whatever arrives, the relay
answers with a 2xx or a 4xx (never a 5xx, never a crash), and an unsigned or wrongly
signed body never stores anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igbridge.relay.sandbox.genesys_sim import sign_genesys
from igbridge.relay.sandbox.meta_sim import sign_meta
from igbridge.relay.sandbox.server import ThreadedServer
from igbridge.relay.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay, run_sandbox

KEYS = [
    "object",
    "entry",
    "id",
    "time",
    "messaging",
    "changes",
    "sender",
    "recipient",
    "message",
    "mid",
    "text",
    "timestamp",
    "field",
    "value",
    "from",
    "attachments",
    "type",
    "payload",
    "url",
    "channel",
    "to",
    "content",
    "events",
    "is_echo",
    "reaction",
    "postback",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=25,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps({"object": "instagram", "entry": v}).encode()),
    json_values.map(lambda v: json.dumps({"id": "x", "type": "Text", "channel": v}).encode()),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 5000)),
)


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Sandbox, ThreadedServer, httpx.Client]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with (
        run_sandbox(tmp) as sb,
        run_relay(sb.relay_env(Path(tmp) / "r.db")) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield sb, server, client


def depth(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("igbridge_queue_depth{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(body=bodies, signed=st.sampled_from(["none", "wrong", "right"]))
def test_instagram_route_never_fails_or_stores_unsigned(
    relay: tuple[Sandbox, ThreadedServer, httpx.Client], body: bytes, signed: str
) -> None:
    sb, _, client = relay
    headers: dict[str, Any] = {}
    if signed == "right":
        headers["X-Hub-Signature-256"] = sign_meta(body, sb.meta.app_secret)
    elif signed == "wrong":
        headers["X-Hub-Signature-256"] = sign_meta(body, "not-the-secret")
    before = depth(client) + len(sb.genesys.snapshot())
    resp = client.post("/webhooks/instagram", content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    if signed != "right":
        assert resp.status_code in (401, 403)
        assert depth(client) + len(sb.genesys.snapshot()) == before


@FUZZ
@given(body=bodies, signed=st.sampled_from(["none", "wrong", "right"]))
def test_genesys_route_never_fails_or_stores_unsigned(
    relay: tuple[Sandbox, ThreadedServer, httpx.Client], body: bytes, signed: str
) -> None:
    sb, _, client = relay
    headers: dict[str, Any] = {}
    if signed == "right":
        headers["X-Hub-Signature-256"] = sign_genesys(body, WEBHOOK_SECRET)
    elif signed == "wrong":
        headers["X-Hub-Signature-256"] = sign_genesys(body, "not-the-secret-at-all")
    sent_before = len(sb.meta.sent)
    resp = client.post("/webhooks/genesys", content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    if signed != "right":
        assert resp.status_code in (401, 403)
        assert len(sb.meta.sent) == sent_before
