"""A loop between our Genesys bot and a customer's auto-responder is broken within a
bounded number of messages, counted, and bot replies resume once it has calmed down."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from igbridge.relay.pipeline.loops import LoopBreaker, LoopRules
from igbridge.relay.store import RedisStore
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay

AUTO_REPLY = "Thanks for contacting us! An agent will reply shortly."
BOT_REPLY = "Hi! I'm the assistant. How can I help?"
CUSTOMER = "5150"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "two-replicas-on-redis"])
def test_breaker_rules(shared: bool, request: pytest.FixtureRequest) -> None:
    async def main() -> None:
        clock = Clock()
        rules = LoopRules(reply_seconds=5, bounces=3, quiet_seconds=30)
        stores: list[RedisStore] = []
        if shared:
            # Two replicas: the bot's replies go out through one, the customer's messages
            # come in through the other; only shared state sees the loop.
            url = request.getfixturevalue("redis_server").url
            stores = [RedisStore(url, prefix="loops", clock=clock) for _ in range(2)]
            for store in stores:
                await store.open()
            outbound = LoopBreaker(rules, clock=clock, store=stores[0])
            inbound = LoopBreaker(rules, clock=clock, store=stores[1])
        else:
            outbound = inbound = LoopBreaker(rules, clock=clock)
        try:
            # A person writing different things after bot replies is not a loop.
            questions = [
                "where is my parcel?",
                "it was due monday",
                "order 4512",
                "can you check?",
                "thanks 🙏",
                "still nothing",
            ]
            for text in questions:
                await outbound.bot_replied("p")
                clock.now += 1
                assert not (await inbound.customer_wrote("p", text)).in_loop
            # An auto-responder repeating itself right after each bot reply is.
            # The first auto-reply repeats nothing yet; each later one is a bounce.
            results = []
            for _ in range(4):
                await outbound.bot_replied("b")
                clock.now += 1
                results.append(await inbound.customer_wrote("b", AUTO_REPLY))
            assert [(v.in_loop, v.found) for v in results] == [
                (False, False),
                (False, False),
                (False, False),
                (True, True),
            ]
            assert await outbound.holding("b")
            assert inbound.loops_detected == 1
            clock.now += 31
            assert not await outbound.holding("b")  # calmed down
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_loop_with_a_scripted_auto_responder_is_broken(sandbox: Sandbox, tmp_path: Path) -> None:
    guard = json.dumps({"loops": {"replySeconds": 5, "bounces": 3, "quietSeconds": 2}})
    stop = threading.Event()
    with run_relay(sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_GUARD=guard)) as relay:
        ig_url = f"{relay.url}/webhooks/instagram"
        gen_url = f"{relay.url}/webhooks/genesys"

        def customer_auto_responder() -> None:
            answered = 0
            while not stop.is_set():
                sent = [s for s in sandbox.meta.sent if s["recipient"].get("id") == CUSTOMER]
                for _ in sent[answered:]:
                    body = sandbox.meta.webhook(
                        [sandbox.meta.messaging(CUSTOMER, {"text": AUTO_REPLY})]
                    )
                    sandbox.meta.deliver_webhook(ig_url, body)
                answered = len(sent)
                time.sleep(0.02)

        def genesys_bot() -> None:
            seen = 0
            while not stop.is_set():
                inbound = [
                    m
                    for m in sandbox.genesys.snapshot()
                    if m.body["channel"]["from"]["id"] == CUSTOMER
                ]
                for _ in inbound[seen:]:
                    reply = sandbox.genesys.build_agent_message(
                        CUSTOMER, BOT_REPLY, originatingEntity="Bot"
                    )
                    sandbox.genesys.post_agent_message(gen_url, reply, WEBHOOK_SECRET)
                seen = len(inbound)
                time.sleep(0.02)

        threads = [
            threading.Thread(target=f, daemon=True) for f in (customer_auto_responder, genesys_bot)
        ]
        for t in threads:
            t.start()
        first = sandbox.meta.webhook([sandbox.meta.messaging(CUSTOMER, {"text": AUTO_REPLY})])
        sandbox.meta.deliver_webhook(ig_url, first)
        held = lambda: any(  # noqa: E731
            r["status"] == "Failed" and r["reasons"][0]["code"] == "MessageNotAllowed"
            for r in sandbox.genesys.receipts
        )
        assert sandbox.genesys.wait_for(held, timeout=20)
        time.sleep(1.0)  # let anything in flight settle
        stop.set()
        for t in threads:
            t.join(5)
        bot_sends = [s for s in sandbox.meta.sent if s["recipient"].get("id") == CUSTOMER]
        metrics = httpx.get(f"{relay.admin_url}/metrics").text
        assert len(bot_sends) <= 5  # broken within a bounded number of bot messages
        assert "igbridge_loops_detected_total 1.0" in metrics
        flagged = [m for m in sandbox.genesys.snapshot() if m.attributes.get("LoopSuspected")]
        assert flagged  # the agent can see why the bot went quiet

        # Quiet for longer than quietSeconds: bot replies are allowed again.
        time.sleep(2.2)
        person = sandbox.meta.webhook(
            [sandbox.meta.messaging(CUSTOMER, {"text": "Hello, a real question"})]
        )
        sandbox.meta.deliver_webhook(ig_url, person)
        reply = sandbox.genesys.build_agent_message(CUSTOMER, BOT_REPLY, originatingEntity="Bot")
        sandbox.genesys.post_agent_message(gen_url, reply, WEBHOOK_SECRET)
        assert sandbox.genesys.wait_for(
            lambda: any(
                r["id"] == reply["id"] and r["status"] == "Delivered"
                for r in sandbox.genesys.receipts
            )
        )


def test_near_identical_quick_replies_loop_but_slow_repeats_do_not() -> None:
    async def main() -> None:
        clock = Clock()
        breaker = LoopBreaker(LoopRules(reply_seconds=5, bounces=3), clock=clock)
        # An auto-responder that numbers its tickets still repeats itself.
        found = []
        for ticket in range(1230, 1234):
            await breaker.bot_replied("t")
            clock.now += 1
            text = f"Thanks! Your ticket #{ticket} is open. We answer within a day."
            found.append((await breaker.customer_wrote("t", text)).found)
        assert found == [False, False, False, True]
        # The same text sent long after each bot reply is a person, not a loop.
        for _ in range(6):
            await breaker.bot_replied("s")
            clock.now += 6
            assert not (await breaker.customer_wrote("s", AUTO_REPLY)).in_loop

    asyncio.run(main())
