"""Clients that never finish a request, or hold connections open, cannot take the relay
offline: through ``igbridge-relay serve`` as a real process under a 256 open-files limit,
slow and idle connections are closed after their timeouts and the admin port's probes
answer throughout; the limits themselves are planned from the configured ones and the
files limit."""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from igbridge.relay.web.server import MAX_HEAD_BYTES, Limits, plan_limits
from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess

FD_LIMIT = 256
SLOW_BODIES = 20
SLOW_HEADS = 80
IDLE = 200  # with the others, 300: more than the relay has files for


@contextlib.contextmanager
def open_files_limit(limit: int) -> Iterator[None]:
    """Children started inside inherit ``limit`` (the ``ulimit -n`` of a small pod)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def drain_until_closed(socks: list[socket.socket], seconds: float) -> dict[socket.socket, bytes]:
    """What the relay sent on each socket until it closed it, for at most ``seconds``;
    the sockets still open then are missing from the answer."""
    got: dict[socket.socket, bytes] = dict.fromkeys(socks, b"")
    open_ = set(socks)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:  # bounded in time
        readable, _, _ = select.select(list(open_), [], [], 0.2)
        for sock in readable:
            try:
                chunk = sock.recv(4096)
            except OSError:
                chunk = b""
            if chunk:
                got[sock] += chunk
            else:
                open_.discard(sock)
    return {s: data for s, data in got.items() if s not in open_}


def healthy(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def counter(url: str, reason: str) -> float:
    prefix = f'igbridge_http_connections_closed_total{{reason="{reason}"}} '
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_slow_and_idle_connections_are_closed_and_probes_answer_throughout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Long enough for this test to open all its connections and look around before the
    # first ones time out, even on a busy machine.
    env = sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_HEADER_TIMEOUT="3",
        IGBRIDGE_BODY_TIMEOUT="3",
        IGBRIDGE_MAX_CONNECTIONS="100",
    )
    relay = RelayProcess(env, tmp_path / "relay.log")
    with open_files_limit(FD_LIMIT):
        relay.start()
    held: list[socket.socket] = []
    try:
        webhook = f"{relay.url}/webhooks/instagram"
        body = b'{"object": "instagram", "entry": []}'
        # Heads sent, bodies never finished: these hold requests open, not just sockets.
        slow_bodies = [
            connect(
                relay.port,
                b"POST /webhooks/instagram HTTP/1.1\r\nHost: relay\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            for _ in range(SLOW_BODIES)
        ]
        # Idle before slow heads: at the hard cap the relay closes whoever has waited
        # longest for a request head, here idle ones.
        idle = [connect(relay.port) for _ in range(IDLE)]
        slow_heads = [
            connect(relay.port, b"POST /webhooks/instagram HTTP/1.1\r\nHost: rel")
            for _ in range(SLOW_HEADS)
        ]
        held = slow_bodies + idle + slow_heads
        assert len(held) > FD_LIMIT
        # The webhook port is past its hard cap; the admin port has connections of its own.
        assert healthy(relay.admin_url)
        # Over the connection limit webhooks are turned away with a time to come back,
        # while the probes are answered.
        busy = httpx.post(webhook, content=body, timeout=5)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "5"
        assert httpx.get(f"{relay.admin_url}/readyz", timeout=5).status_code == 200
        assert (
            "igbridge_http_connections_closed_total"
            in httpx.get(f"{relay.admin_url}/metrics", timeout=5).text
        )

        closed = drain_until_closed(held, seconds=15)
        assert len(closed) == len(held), "connections still open past their timeouts"
        # The slow requests were told why; idle ones were just closed.
        for sock in slow_bodies:
            assert closed[sock].startswith(b"HTTP/1.1 408 ")
        for sock in slow_heads:
            assert closed[sock].startswith(b"HTTP/1.1 408 ")
        assert all(closed[sock] == b"" for sock in idle)

        assert healthy(relay.admin_url)
        signed = sandbox.meta.webhook([sandbox.meta.messaging("7201", {"text": "after"})])
        assert sandbox.meta.deliver_webhook(webhook, signed).status_code == 200
        for reason in ("header_timeout", "body_timeout", "evicted", "over_limit"):
            assert counter(relay.admin_url, reason) > 0, reason
        log = relay.log_path.read_text()
        assert "closed client connections to protect the server" in log
        assert "Traceback" not in log  # requests cut off are not server errors
    finally:
        for sock in held:
            sock.close()
        relay.stop()


def test_a_head_without_end_gets_431_and_an_idle_keep_alive_connection_is_closed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_KEEP_ALIVE_TIMEOUT="1")
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    try:
        with connect(relay.port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n") as kept:
            (answer,) = drain_until_closed([kept], seconds=10).values()
        assert answer.startswith(b"HTTP/1.1 200 ")  # answered, then closed once idle
        sock = connect(relay.port, b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
        with sock:
            line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            with contextlib.suppress(OSError):  # the relay may close while we still send
                for _ in range(MAX_HEAD_BYTES // len(line) + 8):  # bounded
                    sock.sendall(line)
            (answer,) = drain_until_closed([sock], seconds=10).values()
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert healthy(relay.url)
    finally:
        relay.stop()


PLANS = {
    "roomy pod: as configured": (
        {"max_connections": 1000, "fd_limit": 1 << 20},
        Limits(10.0, 30.0, max_connections=1000, hard_cap=1250),
    ),
    "ulimit -n 256: lowered under the files limit": (
        {"max_connections": 1000, "fd_limit": 256},
        Limits(10.0, 30.0, max_connections=176, hard_cap=192),
    ),
    "small limit: probes keep at least 16 places": (
        {"max_connections": 10, "fd_limit": 1024},
        Limits(10.0, 30.0, max_connections=10, hard_cap=26),
    ),
    "absurdly low files limit: still a place for a probe": (
        {"max_connections": 1000, "fd_limit": 10},
        Limits(10.0, 30.0, max_connections=1, hard_cap=2),
    ),
}


@pytest.mark.parametrize("case", list(PLANS))
def test_plan_limits(case: str) -> None:
    given, expected = PLANS[case]
    assert plan_limits(header_timeout=10.0, body_timeout=30.0, **given) == expected
