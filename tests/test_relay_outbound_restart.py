"""A relay killed between accepting an agent's reply and sending it sends it once after restart."""

from __future__ import annotations

import time
from pathlib import Path

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox
from tests.harness.process import RelayProcess


def test_restart_between_accept_and_send(sandbox: Sandbox, tmp_path: Path) -> None:
    relay = RelayProcess(
        sandbox.relay_env(tmp_path / "relay.db", IGBRIDGE_BACKOFF_CAP="0.5"),
        tmp_path / "relay.log",
    )
    relay.start()
    try:
        now = int(time.time() * 1000)
        body = sandbox.meta.webhook([sandbox.meta.messaging("8101", {"text": "hi"}, ts_ms=now)])
        sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
        sandbox.genesys.wait_for_messages(1)
        # Instagram is down: accepted replies wait in the store.
        sandbox.meta.faults.add(Fault(status=503, count=10_000, path_prefix="/v21.0/me/messages"))
        replies = [sandbox.genesys.build_agent_message("8101", f"reply {i} ✅") for i in range(3)]
        for reply in replies:
            resp = sandbox.genesys.post_agent_message(
                f"{relay.url}/webhooks/genesys", reply, WEBHOOK_SECRET
            )
            assert resp.status_code == 200
        sandbox.genesys.wait_for(lambda: sandbox.meta.faults.injected >= 1)
        relay.kill()
        sandbox.meta.faults.clear()
        relay.start()
        ids = {r["id"] for r in replies}
        assert sandbox.genesys.wait_for(
            lambda: ids <= {r["id"] for r in sandbox.genesys.receipts}, timeout=60
        )
        time.sleep(0.5)
    finally:
        relay.stop()
    assert [s["message"]["text"] for s in sandbox.meta.sent] == [f"reply {i} ✅" for i in range(3)]
    receipts = [r for r in sandbox.genesys.receipts if r["id"] in ids]
    assert len(receipts) == 3
    assert {r["status"] for r in receipts} == {"Delivered"}
