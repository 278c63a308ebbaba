"""Faults under load, through a real relay: a storm of 429s, Genesys down for a while,
Meta's window error on a burst of replies, and a relay killed with SIGKILL mid-stream."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay
from tests.harness.process import RelayProcess
from tests.replicas import Load, received_by_customer, without_repeats

GENESYS_INBOUND = "/api/v2/conversations/messages/"
HOUR_MS = 3600 * 1000


def send_all(sandbox: Sandbox, url: str, customers: int, per_customer: int) -> dict[str, list[str]]:
    """Each customer's messages in order, each answered 200; what was sent, by customer."""
    sent: dict[str, list[str]] = {}
    for i in range(per_customer):
        for c in range(customers):
            customer = f"66{c:02d}"
            text = f"{customer} says {i} ✨"
            body = sandbox.meta.webhook(
                [sandbox.meta.messaging(customer, {"text": text}, ts_ms=50_000 + i)]
            )
            resp = sandbox.meta.deliver_webhook(f"{url}/webhooks/instagram", body)
            assert resp.status_code == 200
            sent.setdefault(customer, []).append(text)
    return sent


def most_within(times: list[float], span: float) -> int:
    """The most events that fall within any interval of ``span`` seconds."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= span:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_storm_of_429s_is_paced_by_retry_after_and_then_delivered(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    customers, per_customer, storm = 5, 3, 20
    sandbox.genesys.faults.add(
        Fault(status=429, retry_after=1, count=storm, path_prefix=GENESYS_INBOUND)
    )
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        sent = send_all(sandbox, relay.url, customers, per_customer)
        sandbox.genesys.wait_for_messages(customers * per_customer, timeout=60)
        metrics = httpx.get(f"{relay.admin_url}/metrics").text
    assert received_by_customer(sandbox) == sent
    assert sandbox.genesys.faults.injected == storm
    # Retry-After: 1 means each customer waits a second before trying again; with one
    # message per customer in flight, no second can hold more 429s than customers.
    assert most_within(sandbox.genesys.faults.injected_at, 0.9) <= customers
    assert f'igbridge_delivery_retries_total{{queue="inbound",reason="429"}} {storm}.0' in metrics


def test_genesys_down_for_a_while_then_back_delivers_all_in_order_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.genesys.faults.add(Fault(status=503, count=100_000, path_prefix=GENESYS_INBOUND))
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_BACKOFF_CAP="0.5")
    with run_relay(env) as relay:
        sent = send_all(sandbox, relay.url, customers=6, per_customer=5)
        assert sandbox.genesys.wait_for(lambda: sandbox.genesys.faults.injected >= 18, 20)
        assert httpx.get(f"{relay.admin_url}/readyz").status_code == 200  # down is not broken
        assert sandbox.genesys.messages == []
        sandbox.genesys.faults.clear()
        sandbox.genesys.wait_for_messages(30, timeout=60)
        sandbox.genesys.wait_for(31, timeout=2.0)  # a doubled message would show up now
    assert received_by_customer(sandbox) == sent


def test_metas_window_error_on_a_burst_of_replies_each_ends_in_the_right_receipt(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The relay believes the window open (Meta's webhook said 1 h ago), Meta says it
    closed 25 h ago: every first send is refused. A human's reply goes again with the
    HUMAN_AGENT tag and is delivered; a bot's cannot and ends MessageExpired. Once each."""
    customers = [f"44{n:02d}" for n in range(10)]
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_BACKOFF_CAP="0.2")
    with run_relay(env) as relay:
        now = int(time.time() * 1000)
        for customer in customers:
            body = sandbox.meta.webhook(
                [sandbox.meta.messaging(customer, {"text": "hi"}, ts_ms=now - HOUR_MS)]
            )
            assert (
                sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body).status_code
                == 200
            )
            sandbox.meta.set_last_customer_message(customer, now - 25 * HOUR_MS)
        sandbox.genesys.wait_for_messages(len(customers))
        sent: dict[str, tuple[str, str]] = {}
        for n, customer in enumerate(customers):
            who = "Human" if n % 2 == 0 else "Bot"
            body = sandbox.genesys.build_agent_message(
                customer, f"reply {n} 🙂", originatingEntity=who
            )
            resp = sandbox.genesys.post_agent_message(
                f"{relay.url}/webhooks/genesys", body, WEBHOOK_SECRET
            )
            assert resp.status_code == 200
            sent[body["id"]] = (customer, who)
        assert sandbox.genesys.wait_for(
            lambda: len(sandbox.genesys.receipts) >= len(customers), timeout=30
        )
        sandbox.genesys.wait_for(lambda: len(sandbox.genesys.receipts) > len(customers), 1.0)
    receipts = {r["id"]: r for r in sandbox.genesys.receipts}
    assert len(sandbox.genesys.receipts) == len(receipts) == len(customers)  # one each
    for message_id, (_customer, who) in sent.items():
        receipt = receipts[message_id]
        if who == "Human":
            assert receipt["status"] == "Delivered", receipt
        else:
            assert receipt["status"] == "Failed", receipt
            assert receipt["reasons"][0]["code"] == "MessageExpired"
    tagged = [s["recipient"]["id"] for s in sandbox.meta.sent if s.get("tag") == "HUMAN_AGENT"]
    assert sorted(tagged) == sorted(c for c, who in sent.values() if who == "Human")
    window_refusals = [r for r in sandbox.meta.refused if r[1] == 10]
    assert len(window_refusals) == len(customers)  # one refusal each: no retry loop


def test_relay_killed_mid_stream_and_restarted_loses_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """SIGKILL while webhooks keep arriving (Meta retries what got no 200) and deliveries
    run: everything is delivered, in order per customer; a message Genesys accepted just
    before the kill, but not yet marked done, is delivered again right behind itself."""
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    relay.start()
    try:
        load = Load(sandbox, [relay.url], customers=20, per_customer=8)
        sender = load.start()
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.messages) >= 40, 60)
        relay.kill()
        time.sleep(0.5)  # Meta's retries meet a closed port meanwhile
        relay.start()
        sender.join(timeout=120)
        assert load.accepted == load.total
        sandbox.genesys.wait_for_messages(load.total, timeout=60)
        sandbox.genesys.wait_for(load.total + 17, timeout=2.0)
    finally:
        relay.stop()
    received = received_by_customer(sandbox)
    assert {c: without_repeats(t) for c, t in received.items()} == load.sent
    repeats = sum(len(t) for t in received.values()) - load.total
    assert repeats <= 16, f"{repeats} delivered twice"  # at most the in-flight ones
    assert load.unreachable > 0  # the outage was real for the senders
    print(f"redelivered after the SIGKILL: {repeats} of {load.total}")
