"""A lean HTTP/1.1 client for the relay's hot requests: a message to Genesys, a receipt, a
message through the Send API (POSTs), a customer's profile from the Graph API (a GET).

aiohttp spends ~100 µs of CPU on a POST here (building its request and response objects,
its tracing hooks, its stream reader): two fifths of the delivery process's Python time for
an agent's reply, which makes two. These POSTs need none of that: a request of a few
headers and a JSON body, an answer read whole. This client writes the request itself and
reads the answer with httptools (the C parser uvicorn uses): ~45 µs through ``fetch``,
most of it the socket write (``bench/http_client.py``). Connections are kept alive per host,
over TLS where the URL says https.

Everything else (proxies, redirects, downloads, form bodies, HEAD) stays with aiohttp:
``relay.http.fetch`` sends only GETs and plain POSTs of bytes this way, and to hosts no
proxy is configured for. Its failures are aiohttp's exception types, so callers handle one family.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import urlencode, urlsplit

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

# An idle connection older than this is closed rather than reused (aiohttp's default):
# a server that closed it meanwhile would fail the next request on it.
KEEPALIVE_SECONDS = 15.0
USER_AGENT = "igbridge-relay"
Method = Literal["GET", "POST"]
LEAN_METHODS: tuple[Method, ...] = ("GET", "POST")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection: one exchange at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._until_close = False  # the answer's body ends with the connection
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(aiohttp.ClientPayloadError(f"unreadable HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and self._waiter is not None:
            self.on_message_complete()  # a body of neither length nor chunks: it is whole
        self._fail(aiohttp.ServerDisconnectedError())

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        framed = {name.lower() for name, _ in self._headers} & {
            "content-length",
            "transfer-encoding",
        }
        status = self._parser.get_status_code()
        self._until_close = not framed and status >= 200 and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._body = [], []
            return
        waiter, self._waiter = self._waiter, None
        self.reusable = self._parser.should_keep_alive() and not self._until_close
        self._until_close = False
        answer = Response(
            status, CIMultiDictProxy(CIMultiDict(self._headers)), b"".join(self._body)
        )
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    # the pool's side

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers, self._body = [], []
        self.reusable = False
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


_Key = tuple[str, str, int]  # scheme, host, port


class Http1Pool:
    """Kept-alive connections per host, at most ``limit`` in use at once."""

    def __init__(
        self,
        *,
        limit: int = 100,
        connect_timeout: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._connect_timeout = connect_timeout
        self._tls = tls  # the system's certificates when None, loaded at the first https
        self._idle: dict[_Key, collections.deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def request(
        self,
        method: Method,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        """One GET or POST, its answer read whole. Raises aiohttp.ClientError subclasses
        (and ValueError for a header with a line break); a timeout is the caller's, around
        it."""
        key, host, target = _split(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        request = _format(method, target, host, headers or {}, body)
        async with self._slots:
            # Not retried on another connection when a kept-alive one turns out closed: a
            # POST may have been acted on (as aiohttp, after RFC 9112 9.3.1), and a GET
            # here only enriches a message, which goes on without it.
            conn = await self._checkout(key)
            try:
                answer = await conn.send(request)
            except BaseException:
                self._drop(conn)  # the answer's state is unknown: never reuse it
                raise
            self._checkin(key, conn)
            return answer

    async def _checkout(self, key: _Key) -> _Connection:
        """The most recently used live idle connection to the host, or a new one."""
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.closed or now - conn.idle_since > KEEPALIVE_SECONDS:
                self._drop(conn)
                continue
            return conn
        return await self._connect(key)

    async def _connect(self, key: _Key) -> _Connection:
        if self._closed:
            raise aiohttp.ClientConnectionError("HTTP pool closed")
        scheme, host, port = key
        tls = scheme == "https"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=host if tls else None,
                )
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectionError(f"TLS with {host}:{port} failed: {exc}") from None
        except OSError as exc:
            raise aiohttp.ClientConnectionError(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._open.add(conn)
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        # Loading the system's certificates takes ~20 ms: not for a pool that never needs it.
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _checkin(self, key: _Key, conn: _Connection) -> None:
        if self._closed or conn.closed or not conn.reusable:
            self._drop(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, collections.deque()).append(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in self._open:
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing


@functools.lru_cache(maxsize=1024)
def _split(url: str) -> tuple[_Key, str, str]:
    """The pool's key, the Host header and the request target: the hot POSTs go to a few
    URLs, parsed once each."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise aiohttp.InvalidURL(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    host = name if parts.port is None else f"{name}:{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname, port), host, target


def _format(
    method: Method, target: str, host: str, headers: dict[str, str], body: bytes | None
) -> bytes:
    """The request's bytes; ValueError for a line break or a space where it would end a
    header or the request line early (a header injected into ours)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
    lines.append("Accept: */*")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if method == "POST" or body:  # a GET without a body says nothing of one
        lines.append(f"Content-Length: {len(body or b'')}")
    if any("\r" in line or "\n" in line for line in lines) or " " in target:
        raise ValueError("a header or the URL holds a line break or a space")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")
