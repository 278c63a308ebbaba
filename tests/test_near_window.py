"""Customers near the end of Meta's 24-hour window: only those still waiting for an answer
count (the gauge, status.relay.nearWindowEnd and its alert), as named cases and on both
stores (SQLite and a real redis-server)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from igbridge.relay.pipeline.window import HOUR_MS, near_window_end
from igbridge.relay.store import Store
from igbridge.relay.tasks.maintenance import customers_near_window_end
from igbridge.relay.tasks.sla import customer_answered, customer_waiting
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay
from tests.test_store_contract import Backend, Clock, Q, job

NOW = 10_000 * HOUR_MS
ESCALATE_H = 20


def ago(hours: float) -> int:
    return NOW - int(hours * HOUR_MS)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    last_h: float | None  # the customer's last message, hours ago; None: never wrote a DM
    waiting_h: float | None  # their first unanswered message, hours ago; None: answered
    near: bool


CASES = [
    Case("waiting_21_hours", 21, 21, near=True),
    Case("answered_after_their_message_21_hours_ago", 21, None, near=False),
    Case("waiting_exactly_at_the_threshold", ESCALATE_H, ESCALATE_H, near=True),
    Case("waiting_exactly_24_hours", 24, 24, near=True),
    Case("waiting_but_window_closed", 25, 25, near=False),
    Case("waiting_2_hours", 2, 2, near=False),
    Case("waiting_since_23_hours_wrote_again_an_hour_ago", 1, 23, near=False),
    Case("a_comment_waiting_no_direct_message", None, 21, near=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_near_window_end(case: Case) -> None:
    last = None if case.last_h is None else ago(case.last_h)
    waiting = None if case.waiting_h is None else ago(case.waiting_h)
    assert near_window_end(NOW, last, waiting, ESCALATE_H * HOUR_MS) is case.near


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path, redis)


def test_only_customers_still_waiting_are_counted(backend: Backend) -> None:
    async def body(store: Store, _: Clock) -> None:
        async def wrote(customer: str, hours: float) -> None:
            # The webhook records the window; delivery to Genesys starts the waiting.
            await store.enqueue(
                Q, [job(customer, f"{customer}-{hours}", ago(hours))], {customer: ago(hours)}
            )
            await customer_waiting(store, customer, f"conv-{customer}", ago(hours))

        await wrote("waiting", 21)
        await wrote("answered", 21)
        await customer_answered(store, "answered")
        await wrote("closed", 25)
        await wrote("fresh", 2)
        await wrote("wrote_again", 23)
        await wrote("wrote_again", 1)
        # A reaction to the agent's reply moves the window but asks for nothing.
        await wrote("reacted", 22)
        await customer_answered(store, "reacted")
        await store.enqueue(Q, [], {"reacted": ago(21)})

        count = await customers_near_window_end(store, ESCALATE_H * 3600, now_ms=NOW)
        assert count == 1  # "waiting" only

    backend.run(body)


def gauge(relay_url: str) -> float | None:
    prefix = "igbridge_conversations_near_window_end "
    for line in httpx.get(f"{relay_url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def test_the_gauge_leaves_out_an_answered_customer(sandbox: Sandbox, tmp_path: Path) -> None:
    hooks = sandbox.meta.webhooks
    two_hours_ago = int(time.time() * 1000) - 2 * HOUR_MS
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_WINDOW_ESCALATE_AFTER="3600")
    with run_relay(env) as relay:
        for customer in ("7001", "7002"):
            body = hooks.text(customer, "still there?", ts_ms=two_hours_ago)
            assert sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body).is_success
        sandbox.genesys.wait_for_messages(2)
        reply = sandbox.genesys.build_agent_message("7001", "Yes, here!")
        sandbox.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", reply, WEBHOOK_SECRET)
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.receipts) == 1)
        # Both wrote two hours ago (past the one-hour threshold); only 7002 still waits.
        assert sandbox.genesys.wait_for(lambda: gauge(relay.admin_url) == 1.0)
