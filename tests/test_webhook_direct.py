"""The ack's raw ASGI path: its body reading, and which requests skip Starlette's routing.

(The route's answers, metrics and logs through real HTTP: test_relay_webhook.py,
test_hostile_webhooks.py, test_client_disconnects.py.)"""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from igbridge.relay.web.body import BodyTooLarge, receive_body
from igbridge.relay.web.direct import DirectApp

# ASGI messages as a server hands over a request body.
ONE_MESSAGE: list[Message] = [{"type": "http.request", "body": b'{"a": 1}', "more_body": False}]
THREE_CHUNKS: list[Message] = [
    {"type": "http.request", "body": b'{"a"', "more_body": True},
    {"type": "http.request", "body": b": ", "more_body": True},
    {"type": "http.request", "body": b"1}", "more_body": False},
]
GONE_MIDWAY: list[Message] = [
    {"type": "http.request", "body": b'{"a"', "more_body": True},
    {"type": "http.disconnect"},
]


def receiving(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    return receive


def read(messages: list[Message], declared: bytes | None, limit: int) -> bytes:
    return asyncio.run(receive_body(receiving(messages), declared, limit))


@pytest.mark.parametrize("messages", [ONE_MESSAGE, THREE_CHUNKS], ids=["one", "chunked"])
def test_the_body_is_returned_as_sent(messages: list[Message]) -> None:
    assert read(messages, b"8", 8) == b'{"a": 1}'


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(BodyTooLarge):
        read([], b"9", 8)  # nothing to receive: reading would fail otherwise


def test_chunks_past_the_limit_are_refused_without_a_declared_length() -> None:
    with pytest.raises(BodyTooLarge):
        read(THREE_CHUNKS, None, 6)


def test_a_client_gone_before_the_end_is_a_client_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        read(GONE_MIDWAY, None, 100)


async def routed(_: Request) -> Response:
    return PlainTextResponse("routed")


async def direct(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("direct")(scope, receive, send)


def answer(app: DirectApp, method: str, path: str) -> tuple[int, bytes]:
    """The status and body ``app`` answers to a request with an empty body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", b"0")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receiving([{"type": "http.request", "body": b""}]), send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_only_posts_to_the_direct_paths_skip_routing() -> None:
    app = DirectApp(
        routes=[
            Route("/hook", routed, methods=["GET", "POST"]),
            Route("/other", routed, methods=["POST"]),
        ]
    )
    app.direct(["/hook", "/base/hook"], direct)
    assert answer(app, "POST", "/hook") == (200, b"direct")
    assert answer(app, "POST", "/base/hook") == (200, b"direct")
    assert answer(app, "GET", "/hook") == (200, b"routed")
    assert answer(app, "POST", "/other") == (200, b"routed")
    assert answer(app, "PUT", "/hook")[0] == 405
