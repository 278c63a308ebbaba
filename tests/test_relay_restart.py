"""A relay killed with SIGKILL loses nothing it answered 200 for, and doubles nothing."""

from __future__ import annotations

from pathlib import Path

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess

CUSTOMERS = 5
PER_CUSTOMER = 8


def test_sigkill_with_undelivered_messages_then_restart(sandbox: Sandbox, tmp_path: Path) -> None:
    env = sandbox.relay_env(tmp_path / "relay.db")
    relay = RelayProcess(env, tmp_path / "relay.log")
    # Genesys is down: everything the relay accepts stays queued in its store.
    sandbox.genesys.faults.add(
        Fault(status=503, count=10_000, path_prefix="/api/v2/conversations/messages/")
    )
    relay.start()
    try:
        sent: dict[str, list[str]] = {}
        for i in range(PER_CUSTOMER):
            for c in range(CUSTOMERS):
                customer = f"90{c}"
                text = f"{customer}: message {i} 🚀"
                body = sandbox.meta.webhook(
                    [sandbox.meta.messaging(customer, {"text": text}, ts_ms=1_000 + i)]
                )
                resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
                assert resp.status_code == 200
                sent.setdefault(customer, []).append(text)
        sandbox.genesys.wait_for(lambda: sandbox.genesys.faults.injected >= CUSTOMERS)
        relay.kill()
        sandbox.genesys.faults.clear()
        relay.start()
        total = CUSTOMERS * PER_CUSTOMER
        got = sandbox.genesys.wait_for_messages(total, timeout=60)
        sandbox.genesys.wait_for(lambda: len(sandbox.genesys.messages) > total, timeout=1.0)
        got = sandbox.genesys.snapshot()
    finally:
        relay.stop()
    assert len(got) == total  # nothing lost, nothing doubled
    received: dict[str, list[str]] = {}
    for msg in got:
        received.setdefault(msg.body["channel"]["from"]["id"], []).append(msg.text or "")
    assert received == sent  # and each customer's messages in order
