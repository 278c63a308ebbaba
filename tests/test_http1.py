"""The lean client for the relay's hot requests (relay/http1.py), through ``fetch`` on a lean
session as the relay uses it, against real servers on loopback: a scripted HTTP/1.1
server whose answers go wrong on purpose, and uvicorn over TLS."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
import httptools
import pytest
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from igbridge.relay import http
from igbridge.relay.http import Answer, close_session, fetch, new_session
from igbridge.sandbox.server import serve_in_thread
from igbridge.sandbox.tls import make_tls

T = TypeVar("T")


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    connection: int


@dataclass
class Scripted:
    """What reached the server, and how many connections it accepted."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    transports: list[asyncio.Transport] = field(default_factory=list)


def _answer(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Server(asyncio.Protocol):
    """Answers by path: /ok echoes, /chunked, /close, /eof, /drop, /half, /never, /busy."""

    def __init__(self, state: Scripted) -> None:
        self.state = state
        state.connections += 1
        self.number = state.connections
        self.parser = httptools.HttpRequestParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.target = url.decode()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        body = b"".join(self.body)
        method = self.parser.get_method().decode()
        self.state.seen.append(Seen(method, self.target, self.headers, body, self.number))
        self.headers, self.body = {}, []
        path = urlsplit(self.target).path  # a proxy is asked for absolute URLs
        echo = json.dumps({"connection": self.number, "body": body.decode()}).encode()
        if path == "/ok":
            self.transport.write(_answer(200, echo, "Content-Type: application/json"))
        elif path == "/busy":
            self.transport.write(_answer(429, b'{"error":"slow down"}', "Retry-After: 7"))
        elif path == "/chunked":
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        elif path == "/close":
            self.transport.write(_answer(200, echo, "Connection: close"))
            self.transport.close()
        elif path == "/eof":  # HTTP/1.0 style: the body ends with the connection
            self.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end")
            self.transport.close()
        elif path == "/drop":
            self.transport.close()
        elif path == "/half":
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            self.transport.close()
        # /never: no answer at all


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    state = Scripted("")
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(lambda: _Server(state), "127.0.0.1", 0))
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    thread = threading.Thread(target=loop.run_forever, name="scripted-http", daemon=True)
    thread.start()
    try:
        yield state
    finally:

        def shut() -> None:
            server.close()
            for transport in state.transports:  # a closed server leaves its connections
                transport.abort()

        loop.call_soon_threadsafe(shut)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(asyncio.sleep(0))  # the aborts' callbacks
        loop.close()


def lean(
    use: Callable[[aiohttp.ClientSession], Awaitable[T]], *, timeout: float = 5.0, **kw: object
) -> T:
    async def main() -> T:
        session = new_session(timeout=timeout, lean=True, **kw)  # type: ignore[arg-type]
        try:
            return await use(session)
        finally:
            await close_session(session)

    return uvloop.run(main())  # the relay's event loop


def post(session: aiohttp.ClientSession, url: str, body: bytes = b"{}") -> Awaitable[Answer]:
    return fetch(session, "POST", url, data=body, headers={"Authorization": "Bearer t"})


def test_a_post_carries_its_headers_query_and_utf8_body_and_connections_are_reused(
    scripted: Scripted,
) -> None:
    body = json.dumps({"text": "hi 🚀 ünïcode"}, ensure_ascii=False).encode()
    before = len(scripted.seen)

    async def three(session: aiohttp.ClientSession) -> list[Answer]:
        answers = []
        for _ in range(3):
            answers.append(
                await fetch(
                    session,
                    "POST",
                    f"{scripted.url}/ok",
                    data=body,
                    params={"prefetchConversationId": "true"},
                    headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
                )
            )
        return answers

    answers = lean(three)
    assert [a.status for a in answers] == [200, 200, 200]
    assert json.loads(answers[0].json()["body"]) == {"text": "hi 🚀 ünïcode"}
    assert answers[0].headers["content-type"] == "application/json"
    # One connection served all three.
    assert len({a.json()["connection"] for a in answers}) == 1
    seen = scripted.seen[before:]
    assert [s.target for s in seen] == ["/ok?prefetchConversationId=true"] * 3
    assert seen[0].method == "POST"
    assert seen[0].headers["authorization"] == "Bearer t"
    assert seen[0].headers["host"] == scripted.url.removeprefix("http://")
    assert seen[0].body == body


def test_a_get_carries_its_query_and_no_body_and_shares_the_posts_connection(
    scripted: Scripted,
) -> None:
    """The Graph API's profile lookup: a GET with the token and its fields in the query."""
    before = len(scripted.seen)

    async def get_then_post(session: aiohttp.ClientSession) -> list[Answer]:
        params = {"fields": "name,username,profile_pic"}
        got = await fetch(session, "GET", f"{scripted.url}/ok", params=params, headers={"A": "b"})
        chunked = await fetch(session, "GET", f"{scripted.url}/chunked")
        return [got, chunked, await post(session, f"{scripted.url}/ok")]

    got, chunked, posted = lean(get_then_post)
    assert got.status == 200
    assert got.json()["body"] == ""
    assert chunked.body == b"hello world"
    assert got.json()["connection"] == posted.json()["connection"]
    seen = scripted.seen[before:]
    assert [s.method for s in seen] == ["GET", "GET", "POST"]
    assert seen[0].target == "/ok?fields=name%2Cusername%2Cprofile_pic"
    assert seen[0].headers["a"] == "b"
    assert "content-length" not in seen[0].headers
    assert seen[0].body == b""


def test_concurrent_posts_each_get_their_own_answer(scripted: Scripted) -> None:
    async def many(session: aiohttp.ClientSession) -> list[Answer]:
        bodies = [json.dumps({"n": n}).encode() for n in range(40)]
        return await asyncio.gather(*(post(session, f"{scripted.url}/ok", b) for b in bodies))

    answers = lean(many, limit=8)
    assert [json.loads(a.json()["body"])["n"] for a in answers] == list(range(40))
    assert len({a.json()["connection"] for a in answers}) <= 8  # the limit holds


def test_a_refusal_is_an_answer_with_its_headers(scripted: Scripted) -> None:
    answer = lean(lambda s: post(s, f"{scripted.url}/busy"))
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json() == {"error": "slow down"}


def test_a_chunked_answer_is_read_whole(scripted: Scripted) -> None:
    answer = lean(lambda s: post(s, f"{scripted.url}/chunked"))
    assert (answer.status, answer.body) == (200, b"hello world")


def test_an_answer_whose_body_ends_with_the_connection_is_read_whole(scripted: Scripted) -> None:
    async def twice(session: aiohttp.ClientSession) -> list[Answer]:
        return [await post(session, f"{scripted.url}/eof") for _ in range(2)]

    assert [(a.status, a.body) for a in lean(twice)] == [(200, b"to the end")] * 2


def test_a_connection_the_server_closes_is_not_reused(scripted: Scripted) -> None:
    async def twice(session: aiohttp.ClientSession) -> list[Answer]:
        return [await post(session, f"{scripted.url}/close") for _ in range(2)]

    first, second = lean(twice)
    assert first.status == second.status == 200
    assert first.json()["connection"] != second.json()["connection"]


@pytest.mark.parametrize("path", ["/drop", "/half"])
def test_a_server_gone_mid_answer_is_a_transport_error_and_the_next_post_works(
    scripted: Scripted, path: str
) -> None:
    async def broken_then_ok(session: aiohttp.ClientSession) -> Answer:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, f"{scripted.url}{path}")
        return await post(session, f"{scripted.url}/ok")

    assert lean(broken_then_ok).status == 200


def test_no_answer_is_a_timeout_and_that_connection_is_not_reused(scripted: Scripted) -> None:
    async def stuck_then_ok(session: aiohttp.ClientSession) -> tuple[int, int]:
        await post(session, f"{scripted.url}/ok")  # a connection in the pool
        with pytest.raises(TimeoutError):
            await fetch(session, "POST", f"{scripted.url}/never", data=b"{}", total=0.3)
        after = await post(session, f"{scripted.url}/ok")
        return after.status, after.json()["connection"]

    before = scripted.connections
    status, connection = lean(stuck_then_ok)
    assert status == 200
    assert connection == before + 2  # the stuck connection was dropped, a third opened


def test_a_refused_connection_is_a_client_error() -> None:
    from igbridge.sandbox.server import free_port

    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(aiohttp.ClientConnectionError, match="cannot connect"):
        lean(lambda s: post(s, url))


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    scripted: Scripted,
) -> None:
    before = len(scripted.seen)

    async def injected(session: aiohttp.ClientSession) -> Answer:
        headers = {"Authorization": "Bearer t\r\nX-Injected: 1"}
        return await fetch(session, "POST", f"{scripted.url}/ok", data=b"{}", headers=headers)

    with pytest.raises(ValueError, match="line break"):
        lean(injected)
    assert len(scripted.seen) == before


def _echo_app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"got": (await request.body()).decode()})

    return Starlette(routes=[Route("/api", echo, methods=["POST"])])


def test_tls_is_verified_against_the_sessions_certificates(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    with serve_in_thread(_echo_app(), certfile=tls.cert, keyfile=tls.key) as server:
        trusted = lean(lambda s: post(s, f"{server.url}/api", b"secret"), tls=tls.client_context())
        assert trusted.json() == {"got": "secret"}
        # Without the sandbox CA the certificate is unknown: refused, nothing sent.
        with pytest.raises(aiohttp.ClientConnectionError, match="TLS"):
            lean(lambda s: post(s, f"{server.url}/api", b"secret"))


def test_a_proxied_host_still_goes_through_the_proxy(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted.url)
    http._proxy_for.cache_clear()
    before = len(scripted.seen)
    try:
        answer = lean(lambda s: post(s, "http://genesys.invalid/ok"))
    finally:
        http._proxy_for.cache_clear()
    assert answer.status == 200
    # The proxy (our scripted server) was asked for the absolute URL: aiohttp's way.
    assert scripted.seen[before].target == "http://genesys.invalid/ok"
