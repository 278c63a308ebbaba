"""The spam rules: each catches what it should and lets through what it should not."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from igbridge.relay.config import ConfigError, load_settings
from igbridge.relay.meta.events import EventKind, InstagramEvent
from igbridge.relay.pipeline.guard import GuardRules, SpamFilter, Verdict
from igbridge.relay.store import RedisStore
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import Sandbox, run_relay
from tests.harness.redis_server import RedisServer
from tests.test_config import BASE_ENV


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def dm(text: str, sender: str = "42", n: int = 1) -> InstagramEvent:
    data: dict[str, Any] = {"sender": {"id": sender}, "message": {"mid": f"m{n}", "text": text}}
    return InstagramEvent(EventKind.MESSAGE, "1", sender, f"m{n}", n, data)


def rules(**kw: Any) -> GuardRules:
    return GuardRules.model_validate(kw)


def check(spam: SpamFilter, event: InstagramEvent) -> Verdict:
    return asyncio.run(spam.check(event))


@pytest.mark.parametrize(
    "text",
    [
        "😍😍😍",
        "👍",
        "مرحبا، هل الطلب جاهز؟",
        "你好，我的订单在哪里？",
        "Привет!",
        "ok",
        "Olá 👋🏽",
    ],
)
def test_ordinary_messages_pass_every_rule(text: str) -> None:
    f = SpamFilter(
        rules(
            keywords=["crypto"],
            patterns=[r"free\s+followers"],
            blockLinkOnly=True,
            maxRepeats=2,
            rateLimit={"messages": 5, "perSeconds": 60},
        )
    )
    assert not check(f, dm(text)).spam


def test_blocked_sender_keyword_and_pattern() -> None:
    f = SpamFilter(
        rules(blockedSenders=["666"], keywords=["CRYPTO"], patterns=[r"free\s+followers"])
    )
    assert check(f, dm("hi", sender="666")).rule == "blocked_sender"
    assert check(f, dm("Best crypto deal!!")).rule == "keyword"
    assert check(f, dm("Get FREE   followers now")).rule == "pattern"
    assert not check(f, dm("Is shipping free?")).spam


def test_link_only_messages() -> None:
    f = SpamFilter(rules(blockLinkOnly=True))
    assert check(f, dm("https://bit.ly/x1y2")).rule == "link_only"
    assert check(f, dm("  www.example.xyz/promo  ")).rule == "link_only"
    assert not check(f, dm("My order https://shop.example.com/o/12 never came")).spam


def test_repeats_and_rate_limit_use_a_window() -> None:
    clock = Clock()
    f = SpamFilter(rules(maxRepeats=2, repeatWindowSeconds=60), clock=clock)
    verdicts = [check(f, dm("Hello??", n=i)).rule for i in range(4)]
    assert verdicts == [None, None, "repeated", "repeated"]
    clock.now += 61
    assert not check(f, dm("Hello??", n=9)).spam
    limited = SpamFilter(rules(rateLimit={"messages": 3, "perSeconds": 10}), clock=clock)
    assert [check(limited, dm(f"msg {i}", n=i)).rule for i in range(5)] == [
        None,
        None,
        None,
        "rate_limit",
        "rate_limit",
    ]
    clock.now += 11
    assert not check(limited, dm("later")).spam


def test_replicas_count_one_senders_messages_together(redis_server: RedisServer) -> None:
    """Through two replicas sharing Redis, a sender's repeats and rate add up."""

    async def main() -> list[str | None]:
        clock = Clock()
        stores = [RedisStore(redis_server.url, prefix="spam", clock=clock) for _ in range(2)]
        for store in stores:
            await store.open()
        try:
            guard = rules(maxRepeats=2, rateLimit={"messages": 4, "perSeconds": 60})
            replicas = [SpamFilter(guard, clock=clock, store=store) for store in stores]
            texts = ["Hello??", "Hello??", "Hello??", "other", "more"]
            return [
                (await replicas[i % 2].check(dm(t, sender="9", n=i))).rule
                for i, t in enumerate(texts)
            ]
        finally:
            for store in stores:
                await store.close()

    assert asyncio.run(main()) == [None, None, "repeated", None, "rate_limit"]


def test_every_rule_is_off_by_default() -> None:
    f = SpamFilter(GuardRules())
    assert [check(f, dm("hello?", n=i)).spam for i in range(30)] == [False] * 30
    assert not check(f, dm("https://bit.ly/x")).spam


def test_bad_rules_stop_start_up_with_the_variable_named() -> None:
    with pytest.raises(ConfigError, match="IGBRIDGE_GUARD"):
        load_settings({**BASE_ENV, "IGBRIDGE_GUARD": json.dumps({"patterns": ["(unclosed"]})})
    with pytest.raises(ConfigError, match="IGBRIDGE_GUARD"):
        load_settings({**BASE_ENV, "IGBRIDGE_GUARD": json.dumps({"keywordz": ["x"]})})


@pytest.mark.parametrize("action", ["drop", "flag"])
def test_spam_is_kept_out_of_genesys_or_flagged(
    sandbox: Sandbox, tmp_path: Path, action: str
) -> None:
    guard = json.dumps({"keywords": ["crypto"], "action": action})
    with run_relay(sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_GUARD=guard)) as relay:
        url = f"{relay.url}/webhooks/instagram"
        spam = sandbox.meta.webhook(
            [sandbox.meta.messaging("77", {"text": "crypto giveaway"}, ts_ms=1)]
        )
        real = sandbox.meta.webhook(
            [sandbox.meta.messaging("77", {"text": "Where is my order? 📦"}, ts_ms=2)]
        )
        sandbox.meta.deliver_webhook(url, spam)
        sandbox.meta.deliver_webhook(url, real)
        expected = 1 if action == "drop" else 2
        got = sandbox.genesys.wait_for_messages(expected)
        sandbox.genesys.wait_for(lambda: len(sandbox.genesys.messages) > expected, timeout=0.5)
        metrics = httpx.get(f"{relay.admin_url}/metrics").text
    texts = [m.text for m in sandbox.genesys.snapshot()]
    if action == "drop":
        assert texts == ["Where is my order? 📦"]
        assert 'igbridge_guard_total{outcome="dropped",rule="keyword"} 1.0' in metrics
    else:
        assert texts == ["crypto giveaway", "Where is my order? 📦"]
        assert got[0].attributes["Spam"] == "true"
        assert got[0].attributes["SpamRule"] == "keyword"
        assert "Spam" not in got[1].attributes
        assert 'igbridge_guard_total{outcome="flagged",rule="keyword"} 1.0' in metrics


def test_the_channel_status_summarises_what_the_guard_did(tmp_path: Path) -> None:
    from igbridge.relay.health import RelayHealth
    from igbridge.relay.metrics import RelayMetrics
    from igbridge.relay.store import SQLiteStore
    from igbridge.relay.tasks.status_report import StatusReporter

    settings = load_settings(
        {**BASE_ENV, "IGBRIDGE_CHANNEL_NAME": "shop", "IGBRIDGE_CHANNEL_NAMESPACE": "default"}
    )
    metrics = RelayMetrics()
    metrics.guard.labels("keyword", "dropped").inc(2)
    metrics.guard.labels("link_only", "dropped").inc()
    metrics.guard.labels("pattern", "flagged").inc()
    metrics.guard.labels("none", "passed").inc(10)
    metrics.loops_detected.inc()
    metrics.sla_escalations.labels("escalated").inc()

    async def report() -> dict[str, Any]:
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        try:
            return await StatusReporter(settings, store, metrics, RelayHealth()).report()
        finally:
            await store.close()

    import asyncio

    guard = asyncio.run(report())["guard"]
    assert guard == {
        "spamDropped": 3,
        "spamFlagged": 1,
        "loopsDetected": 1,
        "botRepliesHeld": 0,
        "slaEscalations": 1,
    }


def test_a_retried_delivery_is_not_counted_twice(sandbox: Sandbox, tmp_path: Path) -> None:
    """Genesys fails once: the retry is the same message, not a repeat of it."""
    guard = json.dumps({"maxRepeats": 1, "rateLimit": {"messages": 1, "perSeconds": 600}})
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_GUARD=guard, IGBRIDGE_BACKOFF_CAP="0.2")
    sandbox.genesys.faults.add(
        Fault(status=503, count=2, path_prefix="/api/v2/conversations/messages/")
    )
    with run_relay(env) as relay:
        body = sandbox.meta.webhook([sandbox.meta.messaging("4242", {"text": "hello?"})])
        url = f"{relay.url}/webhooks/instagram"
        assert sandbox.meta.deliver_webhook(url, body).status_code == 200
        (msg,) = sandbox.genesys.wait_for_messages(1, timeout=20)
        metrics = httpx.get(f"{relay.admin_url}/metrics").text
    assert msg.text == "hello?"
    assert "Spam" not in msg.attributes
    assert sandbox.genesys.faults.injected == 2  # it was retried twice
    assert 'outcome="dropped"' not in metrics
