"""Several relay replicas on one real redis-server: a replica killed with SIGKILL mid-stream
and Redis restarted mid-stream lose nothing, keep each customer's order and (outside the
unavoidable crash window, measured here) double nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.server import serve_in_thread
from igbridge.sandbox.stack import Sandbox
from tests.harness.redis_server import RedisServer
from tests.replicas import Load, received_by_customer, relay_replicas, without_repeats

GENESYS_INBOUND = "/api/v2/conversations/messages/"


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_two_replicas_one_killed_mid_stream_nothing_lost_nothing_doubled(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    # Genesys answers slowly and fails for now: the replica dies holding leases on jobs
    # whose delivery is under way, and none of them has reached Genesys yet.
    sandbox.genesys.faults.add(
        Fault(status=503, delay=0.3, count=100_000, path_prefix=GENESYS_INBOUND)
    )
    with relay_replicas(sandbox, redis_server.url, tmp_path, 2) as relays:
        load = Load(sandbox, [r.url for r in relays], customers=12, per_customer=6)
        sender = load.start()
        assert wait_until(
            lambda: load.accepted >= load.total // 3 and sandbox.genesys.faults.injected >= 8,
            timeout=30,
        )
        relays[0].kill()
        sender.join(timeout=120)
        assert load.accepted == load.total
        sandbox.genesys.faults.clear()
        sandbox.genesys.wait_for_messages(load.total, timeout=60)
        # Anything doubled would arrive right behind: give it a moment.
        sandbox.genesys.wait_for(load.total + 1, timeout=3.0)
    assert received_by_customer(sandbox) == load.sent


def test_three_replicas_one_killed_while_delivering_every_message_in_order(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Genesys healthy: the killed replica may have had messages accepted by Genesys
    but not yet marked done; those (and only those) are delivered again, right behind
    themselves, with the same messageId."""
    # DEBUG: each delivery is logged, to show what the killed replica was doing.
    with relay_replicas(
        sandbox, redis_server.url, tmp_path, 3, IGBRIDGE_LOG_LEVEL="DEBUG"
    ) as relays:
        load = Load(sandbox, [r.url for r in relays], customers=30, per_customer=10)
        sender = load.start(threads=12)
        assert wait_until(lambda: len(sandbox.genesys.messages) >= load.total // 3, timeout=60)
        # The busiest replica: a replica that finishes a customer's job claims that
        # customer's next one in the same round trip, so one may carry most of the load.
        killed = max(range(3), key=lambda n: deliveries(tmp_path / f"relay{n}.log"))
        relays[killed].kill()
        sender.join(timeout=120)
        assert load.accepted == load.total
        sandbox.genesys.wait_for_messages(load.total, timeout=60)
        sandbox.genesys.wait_for(load.total + 17, timeout=3.0)
    got = sandbox.genesys.snapshot()
    received = received_by_customer(sandbox)
    assert {c: without_repeats(texts) for c, texts in received.items()} == load.sent
    for texts in received.values():  # a repeat comes right behind its original
        assert [t for i, t in enumerate(texts) if i == 0 or texts[i - 1] != t] == without_repeats(
            texts
        )
    ids = {msg.text: msg.message_id for msg in got}
    assert all(ids[msg.text] == msg.message_id for msg in got)
    repeats = len(got) - load.total
    # At most one job per customer is in flight on a replica, 16 customers at a time.
    assert repeats <= 16, f"{repeats} messages delivered twice"
    assert deliveries(tmp_path / f"relay{killed}.log") > 0  # it was doing real work
    print(f"redelivered after the SIGKILL: {repeats} of {load.total}")


def test_redis_restarted_mid_stream_webhooks_wait_nothing_lost_or_doubled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        # A lease longer than the outage: jobs in flight keep their owner across it.
        with relay_replicas(sandbox, redis.url, tmp_path, 2, IGBRIDGE_LEASE_SECONDS="6") as relays:
            load = Load(sandbox, [r.url for r in relays], customers=10, per_customer=8)
            sender = load.start()
            assert wait_until(lambda: load.accepted >= load.total // 3, timeout=30)
            redis.kill()  # SIGKILL: only what Redis fsynced survives
            ready = relays[0].admin_url + "/readyz"
            assert wait_until(lambda: httpx.get(ready, timeout=5).status_code == 503, 15)
            body = sandbox.meta.webhook([sandbox.meta.messaging("9999", {"text": "hi"})])
            refused = sandbox.meta.deliver_webhook(f"{relays[1].url}/webhooks/instagram", body)
            assert refused.status_code == 503  # Meta will retry; nothing was accepted
            redis.start()
            assert wait_until(lambda: httpx.get(ready, timeout=5).status_code == 200, 30)
            sender.join(timeout=120)
            assert load.accepted == load.total
            assert load.refused > 0  # the outage was seen by senders, and retried
            sandbox.genesys.wait_for_messages(load.total, timeout=60)
            sandbox.genesys.wait_for(load.total + 1, timeout=3.0)
    finally:
        redis.stop()
    assert received_by_customer(sandbox) == load.sent
    for n in range(2):  # an outage is expected, not a bug: no handler tracebacks
        assert "job handler failed" not in (tmp_path / f"relay{n}.log").read_text()


def test_three_replicas_escalate_each_waiting_customer_once(
    sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    alerts: list[str] = []
    lock = threading.Lock()

    async def receive(request: Request) -> JSONResponse:
        body = await request.json()
        with lock:
            alerts.append(body["customer"])
        return JSONResponse({"ok": True})

    hook = Starlette(routes=[Route("/alert", receive, methods=["POST"])])
    customers = [f"55{n}" for n in range(6)]
    with (
        serve_in_thread(hook) as alert_server,
        relay_replicas(
            sandbox,
            redis_server.url,
            tmp_path,
            3,
            IGBRIDGE_WINDOW_ESCALATE_AFTER="1",
            IGBRIDGE_SLA_SWEEP_SECONDS="0.05",  # the three sweep all the time, in a race
            IGBRIDGE_ALERT_WEBHOOK_URL=f"{alert_server.url}/alert",
        ) as relays,
    ):
        for n, customer in enumerate(customers):
            body = sandbox.meta.webhook([sandbox.meta.messaging(customer, {"text": "hello?"})])
            url = f"{relays[n % 3].url}/webhooks/instagram"
            assert sandbox.meta.deliver_webhook(url, body).status_code == 200
        sandbox.genesys.wait_for_messages(len(customers))
        assert sandbox.genesys.wait_for(
            lambda: len(sandbox.genesys.priority_changes) >= len(customers), timeout=20
        )
        time.sleep(1.0)  # some sixty more sweeps: still once each
    conversations = [c for c, _priority in sandbox.genesys.priority_changes]
    expected = [sandbox.genesys.conversation_id(c) or "?" for c in customers]
    assert sorted(conversations) == sorted(expected)
    assert sorted(alerts) == sorted(customers)


def test_a_relay_started_before_redis_waits_not_ready_then_serves(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis")  # not started yet
    with relay_replicas(sandbox, redis.url, tmp_path, 1) as (relay,):
        ready = f"{relay.admin_url}/readyz"
        not_ready = httpx.get(ready, timeout=10)
        assert not_ready.status_code == 503
        assert "redis store" in not_ready.text
        body = sandbox.meta.webhook([sandbox.meta.messaging("3131", {"text": "early 🐦"})])
        url = f"{relay.url}/webhooks/instagram"
        assert sandbox.meta.deliver_webhook(url, body).status_code == 503  # Meta retries
        redis.start()
        try:
            assert wait_until(lambda: httpx.get(ready, timeout=10).status_code == 200, 30)
            assert sandbox.meta.deliver_webhook(url, body).status_code == 200
            (msg,) = sandbox.genesys.wait_for_messages(1)
        finally:
            redis.stop()
    assert msg.text == "early 🐦"


def deliveries(log: Path) -> int:
    """Messages a replica's log says it delivered to Genesys (logged at DEBUG)."""
    return log.read_text().count("delivered to genesys")
