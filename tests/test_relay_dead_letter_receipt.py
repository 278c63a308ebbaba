"""An agent's reply the relay gives up on still ends in a final receipt: the agent learns
it was not delivered. Through a real relay, the Meta and Genesys simulators."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from igbridge.relay.delivery import outbound, worker
from igbridge.relay.delivery.retry import HANDLER_ERROR_ATTEMPTS
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_schema import violations
from igbridge.sandbox.genesys_sim import INBOUND
from igbridge.sandbox.relay_server import RelayThread
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay

CUSTOMER = "8001"


def _always_fails(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("a bug in the reply's handling")


@pytest.fixture
def failing_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every outbound job's handling raises (a bug nobody foresaw), and handler retries
    come quickly instead of after half a minute."""
    monkeypatch.setattr(outbound, "message_parts", _always_fails)
    monkeypatch.setattr(worker, "HANDLER_ERROR_RETRY_SECONDS", 0.05)


@pytest.fixture
def relay(sandbox: Sandbox, tmp_path: Path, failing_handler: None) -> Iterator[RelayThread]:
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as server:
        yield server


def agent_says(sb: Sandbox, relay: RelayThread) -> str:
    ts = int(time.time() * 1000) - 60_000
    webhook = sb.meta.webhook([sb.meta.messaging(CUSTOMER, {"text": "hello?"}, ts_ms=ts)])
    assert sb.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", webhook).status_code == 200
    assert sb.genesys.wait_for(lambda: len(sb.genesys.snapshot()) == 1)
    body = sb.genesys.build_agent_message(CUSTOMER, "Your order ships today.")
    resp = sb.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", body, WEBHOOK_SECRET)
    assert resp.status_code == 200, resp.text
    return str(body["id"])


def samples(relay: RelayThread, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"{relay.admin_url}/metrics", timeout=5).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def dead_lettered(relay: RelayThread) -> float:
    key = (("queue", "outbound"), ("reason", "handler_error"))
    return samples(relay, "igbridge_dead_lettered_total").get(key, 0.0)


def wait_until(check: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_dead_lettered_reply_sends_the_agent_a_failed_receipt(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    message_id = agent_says(sandbox, relay)
    assert wait_until(lambda: dead_lettered(relay) == 1)
    receipts = [r for r in sandbox.genesys.receipts if r["id"] == message_id]
    assert len(receipts) == 1, "exactly one final receipt"
    (receipt,) = receipts
    assert receipt["status"] == "Failed"
    assert receipt["isFinalReceipt"] is True
    assert receipt["channel"]["to"]["id"] == CUSTOMER
    (reason,) = receipt["reasons"]
    assert reason["code"] == "GeneralError"
    assert "dead-lettered" in reason["message"]
    assert "RuntimeError" not in reason["message"]  # internals stay in the log
    assert violations("OpenInboundNormalizedReceipt", receipt) == []
    assert sandbox.meta.sent == []
    assert samples(relay, "igbridge_dead_letter_receipts_total") == {(("result", "sent"),): 1.0}
    assert samples(relay, "igbridge_handler_errors_total") == {
        (("queue", "outbound"),): float(HANDLER_ERROR_ATTEMPTS)
    }


def test_a_receipt_genesys_refuses_is_counted_and_not_retried(
    sandbox: Sandbox, relay: RelayThread
) -> None:
    # Genesys answers every receipt with a 503 from now on.
    receipts = INBOUND.format(integration_id=sandbox.genesys.default_integration_id) + "/receipt"
    sandbox.genesys.faults.add(Fault(status=503, count=1000, path_prefix=receipts))
    agent_says(sandbox, relay)
    assert wait_until(lambda: dead_lettered(relay) == 1)
    assert wait_until(
        lambda: (
            samples(relay, "igbridge_dead_letter_receipts_total")
            == {(("result", "not_sent"),): 1.0}
        )
    )
    assert sandbox.genesys.receipts == []
    assert sandbox.genesys.faults.injected == 1
