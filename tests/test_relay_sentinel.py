"""A relay (``serve``: web and delivery processes) on a Redis found through Sentinel: the
primary is SIGKILLed while messages wait in the store; webhooks get 503 until the sentinel
has promoted the replica, then 200 again, and every message the relay acknowledged (and
Redis had replicated) reaches Genesys, with no restart of the relay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess
from tests.harness.redis_sentinel import SentinelSet

MESSAGES = "/api/v2/conversations/messages/"
BOUND = 30.0  # seconds for the relay to take webhooks again after the primary died


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    found = SentinelSet(tmp_path / "redis").start()
    try:
        yield found
    finally:
        found.stop()


def send(sandbox: Sandbox, relay: RelayProcess, customer: str, text: str) -> int:
    body = sandbox.meta.webhook([sandbox.meta.messaging(customer, {"text": text})])
    try:
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body, timeout=5)
    except httpx.HTTPError:
        return 0
    return resp.status_code


def test_a_relay_follows_a_sentinel_failover_and_delivers_what_it_acknowledged(
    sandbox: Sandbox, sentinels: SentinelSet, tmp_path: Path
) -> None:
    env = sandbox.relay_env(
        tmp_path / "unused.db",
        IGBRIDGE_STORE_URL=sentinels.url,
        IGBRIDGE_STORE_PREFIX="sentinel-relay",
        IGBRIDGE_BACKOFF_CAP="1",  # the queued messages go soon after Genesys is back
    )
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    try:
        acked: list[str] = []
        for n in range(5):
            assert send(sandbox, relay, "9101", f"before {n}") == 200
            acked.append(f"before {n}")
        sandbox.genesys.wait_for(5, timeout=30)
        # Genesys is down: what comes next waits in Redis when the primary dies.
        sandbox.genesys.faults.add(Fault(status=503, count=10_000, path_prefix=MESSAGES))
        for n in range(5):
            assert send(sandbox, relay, "9102", f"queued {n}") == 200
            acked.append(f"queued {n}")
        assert sentinels.client(sentinels.primary.port).wait(1, 5000) == 1
        sentinels.primary.kill()
        sandbox.genesys.faults.clear()
        started, refused = time.monotonic(), 0
        while time.monotonic() - started < BOUND:
            status = send(sandbox, relay, "9103", "after")
            if status == 200:
                acked.append("after")
                break
            assert status in (0, 503), status  # refused for Meta to retry, never a 500
            refused += 1
            time.sleep(0.2)
        took = time.monotonic() - started
        assert acked[-1] == "after", (
            f"no webhook taken in {BOUND}s: {relay.log_path.read_text()[-2000:]}"
        )
        assert sentinels.primary_port() == sentinels.replica.port
        assert sandbox.genesys.wait_for(
            lambda: {m.text for m in sandbox.genesys.snapshot()} >= set(acked), timeout=60
        )
        # Ready again: a write went through since the refused ones (bounded wait).
        deadline = time.monotonic() + 15
        while httpx.get(f"{relay.admin_url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "not ready after the failover"
            time.sleep(0.2)
        assert relay.proc is not None
        assert relay.proc.poll() is None  # never stopped by itself: no restart needed
        print(f"relay: webhooks taken again {took:.1f}s after the kill ({refused} refused)")
    finally:
        relay.stop()
    delivered = [m.text or "" for m in sandbox.genesys.snapshot()]
    assert set(delivered) == set(acked)
    assert [t for t in delivered if t.startswith("queued")] == [f"queued {n}" for n in range(5)]
