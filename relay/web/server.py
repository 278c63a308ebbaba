"""The HTTP server's bounds: how long a request may take to arrive, and how many
connections may be open, so clients that never finish a request cannot take the relay
offline (``/healthz`` included).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but keeps a
connection forever while it waits for a request's first bytes, its head or its body, and
accepts connections until the process runs out of file descriptors. Its
``limit_concurrency`` answers 503 to every request over the limit, health probes too, so
the kubelet would restart a relay that is only busy. Hence a small subclass of its
httptools protocol:

- a request's head must arrive within ``header_timeout`` of the connection opening (or
  of the previous answer) and be at most ``MAX_HEAD_BYTES``; its body within
  ``body_timeout`` of the head. Past that: 408 (431 for a huge head), connection closed.
- over ``max_connections`` open connections, requests other than the health and metrics
  routes are answered 503 with ``Retry-After`` and their connection closed;
- at the hard cap (kept below the file descriptor limit), a new connection closes the one
  that has waited longest for a request head (idle or slow): clients busy sending a
  request or waiting for its answer are never evicted, and a probe always gets in.

Deadlines are checked by one timer per server, a few times per timeout, not one timer per
request: the webhook ack path pays two dictionary updates.

``serve`` runs two such servers in one event loop: the webhook port and the admin port
(``/healthz``, ``/readyz``, ``/metrics``). Each has its own connections and its own guard,
so the probes and the scrape answer however many clients hold the webhook port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import uvicorn
from prometheus_client import CollectorRegistry, Counter
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Answered even over the connection limit: probes must see a busy relay as alive.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Request line and headers; Meta's and Genesys's are well under 8 KiB.
MAX_HEAD_BYTES = 64 * 1024
# File descriptors kept for everything but client connections: the listening socket,
# the store's files, the delivery link, connections to Genesys and Meta, logs.
RESERVED_FDS = 64
RETRY_AFTER_SECONDS = 5
# The admin port's connections: the kubelet's probes and a scraper or two need a handful.
ADMIN_MAX_CONNECTIONS = 32


def _plain(status: bytes, text: bytes) -> bytes:
    """A whole response written by the protocol itself, closing the connection."""
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


REQUEST_TIMEOUT = _plain(b"408 Request Timeout", b"request took too long\n")
HEAD_TOO_LARGE = _plain(b"431 Request Header Fields Too Large", b"request head too large\n")
OVER_LIMIT_BODY = b'{"error": "too many connections, retry later"}'


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int  # open connections that may carry webhooks
    hard_cap: int  # open connections at all


def plan_limits(
    *, header_timeout: float, body_timeout: float, max_connections: int, fd_limit: int
) -> Limits:
    """The limits to run with: the configured ones, lowered to fit ``fd_limit`` (the soft
    RLIMIT_NOFILE). Over ``max_connections`` only probes are served; a quarter more (at
    least 16) is the probes' headroom, up to the hard cap."""
    budget = max(2, fd_limit - RESERVED_FDS)
    hard_cap = min(budget, max_connections + max(16, max_connections // 4))
    headroom = max(1, min(16, hard_cap // 4))
    return Limits(header_timeout, body_timeout, min(max_connections, hard_cap - headroom), hard_cap)


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class ConnectionGuard:
    """The deadlines and counts of one server's connections."""

    def __init__(
        self,
        limits: Limits,
        registry: CollectorRegistry | None = None,
        *,
        closed: Counter | None = None,
    ) -> None:
        self.limits = limits
        # Connections waiting for a request head / reading a body, each with its
        # deadline; insertion order is deadline order (one timeout each), so the sweep
        # stops at the first one not yet due and the oldest waiting one is the first.
        self.waiting: dict[GuardedProtocol, float] = {}
        self.reading: dict[GuardedProtocol, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tally: Tally[str] = Tally()
        # A second server's guard shares the first one's counter (one name per registry).
        self.closed = closed or Counter(
            "igbridge_http_connections_closed",
            "Client connections the relay closed or refused to protect itself, by reason "
            "(header_timeout, body_timeout, head_too_large, evicted, refused, over_limit).",
            ["reason"],
            registry=registry,
        )
        self._sweep_every = min(1.0, max(0.05, min(limits.header_timeout, limits.body_timeout) / 4))

    def protocol(self) -> type[GuardedProtocol]:
        """The protocol class for ``uvicorn.Config(http=...)``, bound to this guard."""
        guard = self

        class Bound(GuardedProtocol):
            _guard = guard

        return Bound

    def note(self, reason: str) -> None:
        self._tally[reason] += 1
        self.closed.labels(reason).inc()

    def expect_head(self, conn: GuardedProtocol, now: float) -> None:
        self.reading.pop(conn, None)
        self.waiting.pop(conn, None)  # re-inserted last: its deadline is the latest
        self.waiting[conn] = now + self.limits.header_timeout
        self._arm(conn.loop)

    def expect_body(self, conn: GuardedProtocol, now: float) -> None:
        self.waiting.pop(conn, None)
        self.reading[conn] = now + self.limits.body_timeout
        self._arm(conn.loop)

    def forget(self, conn: GuardedProtocol) -> None:
        self.waiting.pop(conn, None)
        self.reading.pop(conn, None)

    def evict_oldest_waiting(self, newcomer: GuardedProtocol) -> bool:
        for conn in self.waiting:
            if conn is not newcomer:
                del self.waiting[conn]
                conn.transport.close()
                self.note("evicted")
                return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._timer = loop.call_later(self._sweep_every, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for phase, pending in (("header_timeout", self.waiting), ("body_timeout", self.reading)):
            due = []
            for conn, deadline in pending.items():
                if deadline > now:
                    break
                due.append(conn)
            for conn in due:
                del pending[conn]
                conn.timed_out(head=pending is self.waiting)
                self.note(phase)
        if self._tally:
            # One line per sweep, not one per connection: a flood must not flood the log.
            log.warning(
                "closed client connections to protect the server",
                extra={"reasons": dict(self._tally), "open_waiting": len(self.waiting)},
            )
            self._tally.clear()
        if self.waiting or self.reading:
            self._arm(loop)


def over_limit(app: ASGI3Application, guard: ConnectionGuard) -> ASGI3Application:
    """``app`` for the probe routes; 503 with Retry-After for everything else."""

    async def limited(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await app(scope, receive, send)
            return
        guard.note("over_limit")
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(OVER_LIMIT_BODY)).encode()),
                    (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                    (b"connection", b"close"),
                ],
                "trailers": False,
            }
        )
        await send({"type": "http.response.body", "body": OVER_LIMIT_BODY, "more_body": False})

    return limited


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under a ``ConnectionGuard`` (bound by ``protocol``)."""

    _guard: ClassVar[ConnectionGuard]
    _head_bytes = 0
    _head_begun = False
    _full_app: ASGI3Application | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self._guard
        self._full_app = self.app
        if len(self.connections) > guard.limits.hard_cap and not guard.evict_oldest_waiting(self):
            guard.note("refused")  # every connection is mid-request: nothing to free
            transport.abort()
            return
        guard.expect_head(self, self.loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_begun:  # still inside a head after this chunk
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._guard.forget(self)
                self._guard.note("head_too_large")
                self.transport.write(HEAD_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_begun = False
        guard = self._guard
        guard.expect_body(self, self.loop.time())
        assert self._full_app is not None
        over = len(self.connections) > guard.limits.max_connections
        self.app = over_limit(self._full_app, guard) if over else self._full_app
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._guard.reading.pop(self, None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head's clock starts now, unless a pipelined request is already in.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._guard.expect_head(self, self.loop.time())

    def timed_out(self, *, head: bool) -> None:
        """Past a deadline: 408 if a request was under way and unanswered, then close."""
        if self.transport.is_closing():
            return
        if head:
            unanswered = self._head_begun  # an idle connection just closes
        else:
            unanswered = self.cycle is not None and not self.cycle.response_started
        if unanswered:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


class RelayServer(uvicorn.Server):
    """uvicorn's server, saying when it serves; ``serve_pair`` handles the signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_pair(
    web: RelayServer, admin: RelayServer, web_socket: socket.socket, admin_socket: socket.socket
) -> None:
    """Serve the webhook port and the admin port from this loop until ``web`` stops.

    The admin port opens once the webhook server serves (the app's start-up has run, so its
    ``/healthz`` means the relay is up) and closes after that server's shutdown (the probes
    answer during a graceful shutdown). SIGTERM and SIGINT stop the webhook server as they
    stop uvicorn alone, and are raised again at the end (main thread only)."""
    with uvicorn.Server.capture_signals(web):
        web_task = asyncio.create_task(web.serve([web_socket]))
        serving = asyncio.create_task(web.serving.wait())
        await asyncio.wait({web_task, serving}, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():  # the start-up failed or was stopped
            serving.cancel()
            admin_socket.close()
            await web_task
            return
        admin_task = asyncio.create_task(admin.serve([admin_socket]))
        try:
            await web_task
        finally:
            admin.should_exit = True
            await admin_task
