"""The webhook route's contract: handshake, signatures, bad input, and delivery behaviour."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import VERIFY_TOKEN, Sandbox, run_relay
from tests.fixtures_loader import load_fixture

INBOUND_PATH = "/api/v2/conversations/messages/"


def metric(relay_url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{relay_url}/metrics").text
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_handshake(sandbox: Sandbox, tmp_path: Path) -> None:
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        ok = sandbox.meta.verify_webhook(url, VERIFY_TOKEN, "1158201444")
        assert (ok.status_code, ok.text) == (200, "1158201444")
        assert sandbox.meta.verify_webhook(url, "wrong", "1").status_code == 403
        bad_mode = httpx.get(
            url, params={"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN}
        )
        assert bad_mode.status_code == 403


def test_signatures_and_bad_input_are_refused_and_nothing_is_stored(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_META_APP_SECRET="old-secret,new-secret",
        IGBRIDGE_MAX_BODY_BYTES="4096",
    )
    body = load_fixture("text")
    with run_relay(env) as relay:
        url = f"{relay.url}/webhooks/instagram"
        unsigned = httpx.post(url, content=body)
        assert unsigned.status_code == 401
        assert "missing" in unsigned.json()["error"]
        wrong = sandbox.meta.deliver_webhook(url, body, secret="not-the-secret")
        assert wrong.status_code == 403
        garbage = httpx.post(url, content=body, headers={"X-Hub-Signature-256": "sha256=zz"})
        assert garbage.status_code == 403
        huge = sandbox.meta.deliver_webhook(url, b"{" + b" " * 5000 + b"}", secret="new-secret")
        assert huge.status_code == 413
        for bad in (b"{not json", b"\xff\xfe{}", b'{"object": "page", "entry": []}', b"[1]"):
            resp = sandbox.meta.deliver_webhook(url, bad, secret="new-secret")
            assert resp.status_code == 400, bad
            assert resp.json()["error"]
        assert metric(relay.admin_url, "igbridge_queue_depth", 'queue="inbound"') == 0
        # A rotated-out secret still verifies during rotation.
        assert sandbox.meta.deliver_webhook(url, body, secret="old-secret").status_code == 200
        assert len(sandbox.genesys.wait_for_messages(1)) == 1


def test_duplicates_reach_genesys_once(sandbox: Sandbox, tmp_path: Path) -> None:
    body = load_fixture("text_emoji")
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        for _ in range(3):  # Meta retries, and an account connected twice
            assert sandbox.meta.deliver_webhook(url, body).status_code == 200
        sandbox.genesys.wait_for_messages(1)
        sandbox.genesys.wait_for(lambda: len(sandbox.genesys.messages) > 1, timeout=1.0)
        assert len(sandbox.genesys.snapshot()) == 1
        # Dropped when the webhook is split into events, by the event's id.
        assert metric(relay.admin_url, "igbridge_duplicates_total", 'queue="inbound"') == 2


def _text(sandbox: Sandbox, sender: str, text: str, ts: int) -> dict[str, object]:
    return sandbox.meta.webhook([sandbox.meta.messaging(sender, {"text": text}, ts_ms=ts)])


def test_per_customer_order_follows_meta_timestamps(sandbox: Sandbox, tmp_path: Path) -> None:
    t0 = int(time.time() * 1000)
    # The first attempt fails, so the late-arriving earlier messages overtake it.
    sandbox.genesys.faults.add(Fault(status=503, count=1, path_prefix=INBOUND_PATH))
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        sandbox.meta.deliver_webhook(url, _text(sandbox, "501", "third", t0 + 3))
        sandbox.genesys.wait_for(lambda: sandbox.genesys.faults.injected == 1)
        sandbox.meta.deliver_webhook(url, _text(sandbox, "501", "first", t0 + 1))
        sandbox.meta.deliver_webhook(url, _text(sandbox, "501", "second", t0 + 2))
        got = sandbox.genesys.wait_for_messages(3, timeout=20)
    assert [m.text for m in got] == ["first", "second", "third"]


def test_429_retry_after_is_honoured(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.genesys.faults.add(Fault(status=429, retry_after=1, count=2, path_prefix=INBOUND_PATH))
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        started = time.monotonic()
        sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", _text(sandbox, "502", "hello", 1)
        )
        (msg,) = sandbox.genesys.wait_for_messages(1, timeout=20)
        waited = time.monotonic() - started
        assert msg.text == "hello"
        assert waited >= 2.0  # two Retry-After: 1 answers, each waited out
        assert (
            metric(
                relay.admin_url, "igbridge_delivery_retries_total", 'queue="inbound",reason="429"'
            )
            == 2
        )


def test_5xx_and_timeouts_back_off_then_deliver(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.genesys.faults.add(Fault(status=500, count=2, path_prefix=INBOUND_PATH))
    # Times out on the relay's side (2 s), then fails at Genesys: no ambiguous half-delivery.
    sandbox.genesys.faults.add(Fault(delay=3.0, status=504, count=1, path_prefix=INBOUND_PATH))
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", _text(sandbox, "503", "eventually", 1)
        )
        sandbox.genesys.wait_for_messages(1, timeout=30)
        sandbox.genesys.wait_for(lambda: len(sandbox.genesys.messages) > 1, timeout=2.0)
        assert [m.text for m in sandbox.genesys.snapshot()] == ["eventually"]
        assert (
            metric(
                relay.admin_url, "igbridge_delivery_retries_total", 'queue="inbound",reason="5xx"'
            )
            == 2
        )
        assert (
            metric(
                relay.admin_url,
                "igbridge_delivery_retries_total",
                'queue="inbound",reason="network"',
            )
            == 1
        )
        assert metric(relay.admin_url, "igbridge_delivered_total", 'queue="inbound"') == 1


def test_permanent_rejection_is_dead_lettered_and_the_customer_moves_on(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.genesys.faults.add(
        Fault(status=400, count=1, path_prefix=INBOUND_PATH, body={"message": "invalid content"})
    )
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        sandbox.meta.deliver_webhook(url, _text(sandbox, "504", "rejected", 1))
        sandbox.genesys.wait_for(lambda: sandbox.genesys.faults.injected == 1)
        sandbox.meta.deliver_webhook(url, _text(sandbox, "504", "next one", 2))
        got = sandbox.genesys.wait_for_messages(1)
        assert [m.text for m in got] == ["next one"]
        assert metric(relay.admin_url, "igbridge_dead_letters", 'queue="inbound"') == 1
        assert (
            metric(
                relay.admin_url, "igbridge_dead_lettered_total", 'queue="inbound",reason="http_400"'
            )
            == 1
        )


def test_token_is_cached_and_refreshed_once_on_401(sandbox: Sandbox, tmp_path: Path) -> None:
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        url = f"{relay.url}/webhooks/instagram"
        sandbox.meta.deliver_webhook(url, _text(sandbox, "505", "one", 1))
        sandbox.meta.deliver_webhook(url, _text(sandbox, "505", "two", 2))
        sandbox.genesys.wait_for_messages(2)
        assert sandbox.genesys.token_grants == 1
        sandbox.genesys.revoke_tokens()
        sandbox.meta.deliver_webhook(url, _text(sandbox, "505", "three", 3))
        got = sandbox.genesys.wait_for_messages(3)
        assert [m.text for m in got] == ["one", "two", "three"]
        assert sandbox.genesys.token_grants == 2
        assert (
            metric(
                relay.admin_url, "igbridge_delivery_retries_total", 'queue="inbound",reason="auth"'
            )
            == 0
        )


def test_health_readiness_and_metrics(sandbox: Sandbox, tmp_path: Path) -> None:
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        assert httpx.get(f"{relay.url}/healthz").status_code == 200
        assert httpx.get(f"{relay.admin_url}/readyz").json() == {"status": "ready"}
        sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", _text(sandbox, "507", "measured", 1)
        )
        sandbox.genesys.wait_for_messages(1)
        text = httpx.get(f"{relay.admin_url}/metrics").text
        for name in (
            "igbridge_events_received_total",
            "igbridge_delivered_total",
            "igbridge_queue_depth",
            "igbridge_delivery_latency_seconds_bucket",
        ):
            assert name in text


def test_wrong_genesys_credentials_keep_the_relay_ready_and_the_reason_is_given(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_GENESYS_CLIENT_SECRET="wrong-secret-x")
    with run_relay(env) as relay:
        ready = f"{relay.admin_url}/readyz"
        assert sandbox.genesys.wait_for(lambda: "problems" in httpx.get(ready).json())
        resp = httpx.get(ready)
        # Still in the Service: leaving it would lose Meta's and Genesys's webhooks.
        assert resp.status_code == 200
        problem = resp.json()["problems"]["genesys"]
        assert "IGBRIDGE_GENESYS_CLIENT_ID" in problem
        assert "wrong-secret-x" not in resp.text
        # Webhooks are still accepted and kept until the credentials are fixed.
        ok = sandbox.meta.deliver_webhook(
            f"{relay.url}/webhooks/instagram", _text(sandbox, "506", "kept", 1)
        )
        assert ok.status_code == 200
        assert json.loads(ok.text)["stored"] is True


def test_webhooks_also_answer_under_the_public_urls_path(sandbox: Sandbox, tmp_path: Path) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_BASE_PATH="/shop/")
    with run_relay(env) as relay:
        for base in (f"{relay.url}/shop", relay.url):
            ok = sandbox.meta.verify_webhook(f"{base}/webhooks/instagram", VERIFY_TOKEN, "42")
            assert (ok.status_code, ok.text) == (200, "42")
        assert httpx.get(f"{relay.url}/shop/healthz").status_code == 404  # probes stay at /
