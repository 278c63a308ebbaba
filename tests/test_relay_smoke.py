from __future__ import annotations

from pathlib import Path

import httpx

from igbridge.sandbox.stack import Sandbox, run_relay


def test_text_reaches_genesys(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.meta.add_user("1001", "ana.customer", name="Ana Lima")
    with run_relay(sandbox.relay_env(tmp_path / "relay.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        body = sandbox.meta.webhook([sandbox.meta.messaging("1001", {"text": "Olá 👋🏽"})])
        resp = sandbox.meta.deliver_webhook(url, body)
        assert resp.status_code == 200, resp.text
        (msg,) = sandbox.genesys.wait_for_messages(1)
        assert msg.text == "Olá 👋🏽"
        print(msg.body)
        print(httpx.get(f"{relay.admin_url}/readyz").text)
