"""CPU per outgoing POST: httpx (the relay's client before), the relay's aiohttp client, and
its lean client for the hot POSTs (relay/http1.py).

A bare HTTP/1.1 server in a child process on 127.0.0.1 answers every request at once with
a Genesys-like JSON body, so this process's CPU time is the client's alone. Each client
sends ``--requests`` POSTs from ``--concurrency`` tasks over a pool like the relay's; the
figure is CPU µs per request (user + system, this process only), after a warm-up.

    .venv/bin/python -P bench/http_client.py [--requests 4000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection

import httpx

from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.client import GenesysClient
from igbridge.relay.genesys.payloads import From, InboundChannel, InboundMessage
from igbridge.relay.genesys.rest import JSON_UTF8, encode_json
from igbridge.relay.http import close_session, fetch, new_session

ANSWER = json.dumps(
    {"access_token": "bench-token", "expires_in": 86400, "id": "m-1", "conversationId": "c-1"}
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)
PATH = "/api/v2/conversations/messages/bench/inbound/open/message"


class _Answer(asyncio.Protocol):
    """Answers each request (headers, then Content-Length bytes of body) with RESPONSE."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(RESPONSE)


def _serve(sock: socket.socket, ready: Connection) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, sock=sock)
        ready.send(True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _body(i: int) -> bytes:
    return encode_json({"channel": {"messageId": f"mid-{i}", "from": {"id": "42"}}, "text": "hi"})


async def _measure(
    name: str, send: Callable[[int], Awaitable[object]], requests: int, concurrency: int
) -> float:
    async def worker(start: int, count: int) -> None:
        for i in range(start, start + count):
            await send(i)

    async def burst(count: int) -> None:
        share = count // concurrency
        await asyncio.gather(*(worker(k * share, share) for k in range(concurrency)))

    await burst(concurrency * 20)  # warm-up: connections open, caches filled
    cpu = time.process_time()
    wall = time.perf_counter()
    await burst(requests)
    cpu_us = (time.process_time() - cpu) / requests * 1e6
    wall_s = time.perf_counter() - wall
    print(f"{name:32s} {cpu_us:7.0f} µs CPU/request   ({requests / wall_s:,.0f} req/s)")
    return cpu_us


async def _run(base: str, requests: int, concurrency: int) -> None:
    limit = max(32, concurrency * 2)
    headers = {"Authorization": "Bearer bench-token", "Content-Type": JSON_UTF8}
    params = {"prefetchConversationId": "true"}
    url = base + PATH

    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0),
        limits=httpx.Limits(max_connections=limit),
    ) as client:

        async def via_httpx(i: int) -> object:
            resp = await client.post(url, content=_body(i), params=params, headers=headers)
            return resp.json()

        await _measure("httpx POST (before)", via_httpx, requests, concurrency)

    async with new_session(timeout=10.0, connect=5.0, limit=limit) as session:

        async def via_aiohttp(i: int) -> object:
            resp = await fetch(session, "POST", url, data=_body(i), params=params, headers=headers)
            return resp.json()

        await _measure("relay fetch POST (aiohttp)", via_aiohttp, requests, concurrency)

        tokens = TokenProvider(session, base, "bench-client", "bench-secret")
        genesys = GenesysClient(session, base, "bench", tokens)

        async def via_genesys(i: int) -> object:
            message = InboundMessage(
                channel=InboundChannel(
                    message_id=f"mid-{i}", time="2026-01-01T10:00:00.000Z", from_=From(id="42")
                ),
                text="hi",
            )
            return await genesys.send_inbound(message)

        await _measure("GenesysClient.send_inbound", via_genesys, requests, concurrency)

    lean = new_session(timeout=10.0, connect=5.0, limit=limit, lean=True)
    try:

        async def via_lean(i: int) -> object:
            resp = await fetch(lean, "POST", url, data=_body(i), params=params, headers=headers)
            return resp.json()

        await _measure("relay fetch POST (lean, http1)", via_lean, requests, concurrency)
    finally:
        await close_session(lean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    requests = max(args.concurrency, min(args.requests, 200_000))  # bounded either way

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(sock, theirs), daemon=True)
    server.start()
    try:
        if not ours.poll(30):
            raise SystemExit("the bench server did not start")
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        print(f"{requests} POSTs, {args.concurrency} concurrent, {args.loop} loop")
        coro = _run(base, requests, args.concurrency)
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    finally:
        server.terminate()
        server.join(5)
        sock.close()


if __name__ == "__main__":
    main()
