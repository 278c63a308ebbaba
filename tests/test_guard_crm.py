"""CRM enrichment: merged when it answers, never waited on past its timeout, circuit-broken
when it keeps failing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from igbridge.sandbox.server import ThreadedServer, serve_in_thread
from igbridge.sandbox.stack import Sandbox, run_relay


class Crm:
    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def lookup(self, request: Request) -> Response:
        with self.lock:
            self.calls.append(dict(request.query_params))
        if request.headers.get("authorization") != "Bearer crm-token-123":
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        if self.mode == "slow":
            await asyncio.sleep(2)
        if self.mode == "down":
            return JSONResponse({"error": "boom"}, status_code=500)
        return JSONResponse({"CustomerTier": "gold", "CrmId": "C-77", "Source": "spoofed"})


@pytest.fixture
def crm() -> Iterator[tuple[Crm, ThreadedServer]]:
    state = Crm()
    app = Starlette(routes=[Route("/lookup", state.lookup)])
    with serve_in_thread(app) as server:
        yield state, server


def relay_env(sandbox: Sandbox, tmp_path: Path, server: ThreadedServer) -> dict[str, str]:
    return sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_CRM_URL=f"{server.url}/lookup",
        IGBRIDGE_CRM_TIMEOUT="0.5",
        IGBRIDGE_CRM_TOKEN="crm-token-123",
    )


def send(sandbox: Sandbox, relay_url: str, customer: str, text: str) -> None:
    body = sandbox.meta.webhook([sandbox.meta.messaging(customer, {"text": text})])
    assert sandbox.meta.deliver_webhook(f"{relay_url}/webhooks/instagram", body).status_code == 200


def test_crm_fields_are_merged_and_cached(
    sandbox: Sandbox, tmp_path: Path, crm: tuple[Crm, ThreadedServer]
) -> None:
    state, server = crm
    sandbox.meta.add_user("4001", "vip.customer", follower_count=25_000)
    with run_relay(relay_env(sandbox, tmp_path, server)) as relay:
        send(sandbox, relay.url, "4001", "first")
        send(sandbox, relay.url, "4001", "second")
        got = sandbox.genesys.wait_for_messages(2)
    attrs = got[0].attributes
    assert (attrs["CustomerTier"], attrs["CrmId"]) == ("gold", "C-77")
    assert attrs["Source"] == "Instagram_DM"  # the CRM cannot overwrite the relay's own
    assert attrs["FollowerTier"] == "mid"
    assert state.calls == [{"igsid": "4001", "username": "vip.customer"}]  # cached


def test_a_slow_crm_does_not_hold_messages_past_its_timeout(
    sandbox: Sandbox, tmp_path: Path, crm: tuple[Crm, ThreadedServer]
) -> None:
    state, server = crm
    state.mode = "slow"  # answers after 2 s; the relay waits 0.5 s
    with run_relay(relay_env(sandbox, tmp_path, server)) as relay:
        started = time.monotonic()
        send(sandbox, relay.url, "4002", "are you there?")
        (msg,) = sandbox.genesys.wait_for_messages(1, timeout=10)
        elapsed = time.monotonic() - started
    assert msg.text == "are you there?"
    assert "CrmId" not in msg.attributes
    assert elapsed < 4.0  # delivered long before the CRM would have answered


def test_a_failing_crm_opens_the_circuit(
    sandbox: Sandbox, tmp_path: Path, crm: tuple[Crm, ThreadedServer]
) -> None:
    state, server = crm
    state.mode = "down"
    with run_relay(relay_env(sandbox, tmp_path, server)) as relay:
        for i in range(8):  # one after the other, so the failures are counted in order
            send(sandbox, relay.url, f"41{i:02d}", f"message {i}")
            got = sandbox.genesys.wait_for_messages(i + 1)
    assert len(got) == 8  # every message delivered
    assert len(state.calls) == 5  # then the circuit stayed open
