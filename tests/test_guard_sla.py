"""SLA escalation: once per waiting period, at the configured time, reset by a reply,
and neither forgotten nor repeated across a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from igbridge.sandbox.server import serve_in_thread
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay


def fast(sandbox: Sandbox, db: Path, after: str, **extra: str) -> dict[str, str]:
    return sandbox.relay_env(
        db,
        IGBRIDGE_WINDOW_ESCALATE_AFTER=after,
        IGBRIDGE_SLA_SWEEP_SECONDS="0.1",
        IGBRIDGE_WINDOW_PRIORITY="750",
        **extra,
    )


def customer_writes(sandbox: Sandbox, relay_url: str, customer: str, text: str = "hello?") -> None:
    body = sandbox.meta.webhook([sandbox.meta.messaging(customer, {"text": text})])
    assert sandbox.meta.deliver_webhook(f"{relay_url}/webhooks/instagram", body).status_code == 200


def test_escalates_once_with_an_alert(sandbox: Sandbox, tmp_path: Path) -> None:
    alerts: list[dict[str, Any]] = []
    lock = threading.Lock()

    async def receive(request: Request) -> JSONResponse:
        body = await request.json()
        with lock:
            alerts.append(body)
        return JSONResponse({"ok": True})

    hook = Starlette(routes=[Route("/alert", receive, methods=["POST"])])
    with serve_in_thread(hook) as alert_server:
        env = fast(
            sandbox, tmp_path / "r.db", "1", IGBRIDGE_ALERT_WEBHOOK_URL=f"{alert_server.url}/alert"
        )
        with run_relay(env) as relay:
            customer_writes(sandbox, relay.url, "3001")
            (msg,) = sandbox.genesys.wait_for_messages(1)
            assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.priority_changes) == 1)
            time.sleep(0.6)  # several more sweeps: still once
            metrics = httpx.get(f"{relay.admin_url}/metrics").text
    assert sandbox.genesys.priority_changes == [(msg.conversation_id, 750)]
    assert 'igbridge_sla_escalations_total{outcome="escalated"} 1.0' in metrics
    (alert,) = alerts
    assert (alert["event"], alert["customer"], alert["conversationId"]) == (
        "sla_escalation",
        "3001",
        msg.conversation_id,
    )
    assert alert["waitingSeconds"] >= 1


def test_a_reply_resets_the_clock(sandbox: Sandbox, tmp_path: Path) -> None:
    with run_relay(fast(sandbox, tmp_path / "r.db", "2")) as relay:
        customer_writes(sandbox, relay.url, "3002")
        sandbox.genesys.wait_for_messages(1)
        reply = sandbox.genesys.build_agent_message("3002", "On it!")
        sandbox.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", reply, WEBHOOK_SECRET)
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.receipts) == 1)
        time.sleep(2.5)  # past the threshold since the customer's message
        assert sandbox.genesys.priority_changes == []
        customer_writes(sandbox, relay.url, "3002", "thanks, one more thing")
        assert sandbox.genesys.wait_for(
            lambda: len(sandbox.genesys.priority_changes) == 1, timeout=10
        )


def test_escalation_survives_a_restart_without_repeating(sandbox: Sandbox, tmp_path: Path) -> None:
    env = fast(sandbox, tmp_path / "r.db", "1")
    with run_relay(env) as relay:
        customer_writes(sandbox, relay.url, "3003")
        customer_writes(sandbox, relay.url, "3004")
        sandbox.genesys.wait_for_messages(2)
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.priority_changes) == 2)
    with run_relay(env):
        time.sleep(0.8)  # many sweeps after the restart
    assert len(sandbox.genesys.priority_changes) == 2
    env_slow = fast(sandbox, tmp_path / "r2.db", "2")
    with run_relay(env_slow) as relay:
        customer_writes(sandbox, relay.url, "3005")
        sandbox.genesys.wait_for_messages(3)
    assert len(sandbox.genesys.priority_changes) == 2  # stopped before the threshold
    with run_relay(env_slow):
        assert sandbox.genesys.wait_for(
            lambda: len(sandbox.genesys.priority_changes) == 3, timeout=10
        )
