"""Clients that leave in the middle of a webhook's body: a warning line and a count each,
never an error or a traceback, and the relay answers the next webhook as before."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from igbridge.sandbox.stack import Sandbox, run_relay

CLIENTS = 50
HEAD = (
    b"POST /webhooks/instagram HTTP/1.1\r\nHost: relay\r\n"
    b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
)
COUNTER = "igbridge_http_client_disconnects_total "


def disconnects(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(COUNTER):
            return float(line[len(COUNTER) :])
    return 0.0


def test_fifty_clients_gone_mid_body_are_fifty_warnings_and_no_error(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        for _ in range(CLIENTS):
            with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
                sock.sendall(HEAD + b'{"object": "instagram", "en')  # then gone
        deadline = time.monotonic() + 10
        while disconnects(relay.admin_url) < CLIENTS and time.monotonic() < deadline:  # bounded
            time.sleep(0.05)
        assert disconnects(relay.admin_url) == CLIENTS
        body = sandbox.meta.webhook([sandbox.meta.messaging("7301", {"text": "still here"})])
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
        assert resp.status_code == 200, resp.text
        sandbox.genesys.wait_for_messages(1)
    gone = [r for r in caplog.records if "client gone" in r.getMessage()]
    assert len(gone) == CLIENTS
    assert {r.levelno for r in gone} == {logging.WARNING}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert not [r for r in caplog.records if r.exc_info]  # no traceback either
