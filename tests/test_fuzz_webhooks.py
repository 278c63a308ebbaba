"""Bounded fuzzing of both webhook routes over real HTTP: whatever arrives, the relay
answers with a 2xx or a 4xx (never a 5xx, never a crash), and an unsigned or wrongly
signed body never stores anything."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igbridge.sandbox.genesys_sim import sign_genesys
from igbridge.sandbox.meta_sim import sign_meta
from igbridge.sandbox.relay_server import RelayThread
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay, run_sandbox

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


class Huge(int):
    """A body of this many bytes, over the relay's limit."""

    def __bytes__(self) -> bytes:
        return b'{"object": "instagram", "pad": "' + b"x" * int(self) + b'"}'


# Any text, lone surrogates included (JSON can carry them as \\udXXX escapes; UTF-8 cannot).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
MAX_BODY = 64 * 1024
STORE_PATH: dict[int, Path] = {}  # the fuzzed relay's limit, so "huge" stays cheap


def instagram_event(sender: str, text: str, ts: int, kind: str) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": f"m_{abs(hash((sender, text, ts)))}", "text": text}
    if kind == "attachment":
        message = {"mid": message["mid"], "attachments": [{"type": "image", "payload": {}}]}
    elif kind == "echo":
        message["is_echo"] = True
    return {
        "sender": {"id": sender},
        "recipient": {"id": "17841400000000001"},
        "timestamp": ts,
        "message": message,
    }


# Well-formed Instagram webhooks with arbitrary content.
instagram_bodies = st.builds(
    lambda events: json.dumps(
        {"object": "instagram", "entry": [{"id": "1", "time": 1, "messaging": events}]}
    ).encode(),
    st.lists(
        st.builds(
            instagram_event,
            st.text("0123456789", min_size=1, max_size=6),
            any_text,
            st.integers(0, 2**53),
            st.sampled_from(["text", "attachment", "echo"]),
        ),
        max_size=4,
    ),
)
# Well-formed Genesys outbound messages with arbitrary content.
genesys_bodies = st.builds(
    lambda kind, text, to, entity: json.dumps(
        {
            "id": f"g{abs(hash((kind, text, to)))}",
            "direction": "Outbound",
            "originatingEntity": entity,
            "type": kind,
            "text": text,
            "channel": {
                "id": "integration",
                "platform": "Open",
                "type": "Private",
                "to": {"id": to, "idType": "Opaque"},
                "messageId": "x",
                "time": "2026-11-25T10:00:00.000Z",
            },
        }
    ).encode(),
    st.sampled_from(["Text", "Structured", "Event", "Receipt", "Other"]),
    any_text,
    st.text("0123456789", min_size=1, max_size=6),
    st.sampled_from(["Human", "Bot", "Unknown"]),
)
well_formed = st.one_of(instagram_bodies, genesys_bodies)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps({"object": "instagram", "entry": v}).encode()),
    json_values.map(lambda v: json.dumps({"id": "x", "type": "Text", "channel": v}).encode()),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 5000)),
    well_formed,
    # Truncated anywhere, then signed as it is.
    st.builds(lambda b, cut: b[: cut % (len(b) + 1)], well_formed, st.integers(0, 10_000)),
    # Bytes that are not UTF-8 inside a string.
    st.builds(
        lambda b, junk: b.replace(b'"text": "', b'"text": "' + junk, 1),
        well_formed,
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"]),
    ),
    # Over the size limit.
    st.builds(
        lambda n: b'{"object": "instagram", "pad": "' + b"x" * n + b'"}',
        st.integers(MAX_BODY, MAX_BODY + 1000),
    ),
)


@pytest.fixture(scope="module")
def relay(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Sandbox, RelayThread, httpx.Client]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with (
        run_sandbox(tmp) as sb,
        run_relay(
            sb.relay_env(
                Path(tmp) / "r.db",
                IGBRIDGE_MAX_BODY_BYTES=str(MAX_BODY),
                IGBRIDGE_BACKOFF_CAP="0.2",
                IGBRIDGE_SEND_MAX_ATTEMPTS="2",
            )
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        STORE_PATH[id(sb)] = Path(tmp) / "r.db"
        yield sb, server, client


def stored_ever(sb: Sandbox) -> int:
    """Jobs the relay ever stored, both queues: each leaves its dedupe key for 7 days."""
    db = STORE_PATH[id(sb)]
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM dedupe").fetchone()[0])


def depth(admin_url: str) -> float:
    text = httpx.get(f"{admin_url}/metrics", timeout=10).text
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
    relay: tuple[Sandbox, RelayThread, httpx.Client], body: bytes | Huge, signed: str
) -> None:
    body = bytes(body)
    sb, _, client = relay
    headers: dict[str, Any] = {}
    if signed == "right":
        headers["X-Hub-Signature-256"] = sign_meta(body, sb.meta.app_secret)
    elif signed == "wrong":
        headers["X-Hub-Signature-256"] = sign_meta(body, "not-the-secret")
    before = stored_ever(sb)
    resp = client.post("/webhooks/instagram", content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    if signed != "right":
        assert resp.status_code in (401, 403, 413)  # too big is refused before reading
        assert stored_ever(sb) == before


@FUZZ
@given(body=bodies, signed=st.sampled_from(["none", "wrong", "right"]))
def test_genesys_route_never_fails_or_stores_unsigned(
    relay: tuple[Sandbox, RelayThread, httpx.Client], body: bytes | Huge, signed: str
) -> None:
    body = bytes(body)
    sb, _, client = relay
    headers: dict[str, Any] = {}
    if signed == "right":
        headers["X-Hub-Signature-256"] = sign_genesys(body, WEBHOOK_SECRET)
    elif signed == "wrong":
        headers["X-Hub-Signature-256"] = sign_genesys(body, "not-the-secret-at-all")
    before = stored_ever(sb)
    resp = client.post("/webhooks/genesys", content=body, headers=headers)
    assert resp.status_code < 500, resp.text
    if signed != "right":
        assert resp.status_code in (401, 403, 413)  # too big is refused before reading
        assert stored_ever(sb) == before


def test_whatever_was_accepted_was_handled_without_a_handler_error(
    relay: tuple[Sandbox, RelayThread, httpx.Client],
) -> None:
    """Runs after the fuzzing above (same module relay): everything signed and accepted was
    decodable by the workers and ended delivered, ignored or dead-lettered with a reason,
    never in a handler failure (a bug) or as an undecodable payload."""
    _, server, _ = relay
    deadline = time.monotonic() + 60
    while depth(server.admin_url) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    metrics = httpx.get(f"{server.admin_url}/metrics", timeout=10).text
    assert 'reason="handler_error"' not in metrics
    assert 'reason="undecodable"' not in metrics
    assert depth(server.admin_url) == 0
