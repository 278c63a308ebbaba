"""The scripted conversation behind ``igbridge-relay sandbox``: each step says what was
sent, what the relay answered and what the other side received.

Time is simulated: a customer's message dated 25 hours ago is, for Meta's window rules
and the relay's, a customer who wrote 25 hours ago. Every wait is bounded (``WAIT``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import regex

from .demo import CUSTOMER, FAN, LATE, PHOTO_ASSET, SPAMMER, STORY_ASSET, WAITING, DemoStack
from .genesys_agent import quick_reply
from .genesys_sim import RecordedMessage
from .stack import VERIFY_TOKEN, WEBHOOK_SECRET

HOUR_MS = 3600 * 1000
WAIT = 15.0  # seconds any one step may take before the demo says it failed
ROUTING_ATTRIBUTES = ("ProfileUrl", "FollowerTier", "CustomerTier", "LastOrder", "AccountManager")
LONG_REPLY = "Your parcel's journey so far 📦\n" + "".join(
    f"• day {d}: in transit 🚚 — the family is waiting 👨‍👩‍👧‍👦🇧🇷\n" for d in range(1, 31)
)


def say(line: str = "") -> None:
    print(line, flush=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


class Story:
    def __init__(self, demo: DemoStack) -> None:
        self.demo = demo
        self.sb = demo.sb
        self.relay = demo.relay.url
        self.ok = True

    # -- the two sides ----------------------------------------------------------------------
    def customer(self, title: str, body: dict[str, Any]) -> RecordedMessage | None:
        """Instagram → relay; returns what Genesys received for it (None: nothing)."""
        say(f"\nInstagram → relay: {title}")
        before = len(self.sb.genesys.snapshot())
        resp = self.sb.meta.deliver_webhook(f"{self.relay}/webhooks/instagram", body)
        say(f"  relay answered HTTP {resp.status_code} {resp.text}")
        got = self.sb.genesys.wait_for_messages(before + 1, timeout=WAIT)
        if len(got) <= before:
            return None
        self.show(got[before])
        return got[before]

    def show(self, msg: RecordedMessage) -> None:
        attrs = msg.attributes
        sender = msg.body["channel"]["from"].get("nickname") or msg.from_id
        where = "" if msg.endpoint == "message" else f" at …/{msg.endpoint}"
        kind = f"[{attrs.get('Source')}/{attrs.get('EventType')}]"
        say(f"  Genesys received{where} {kind} from {sender}")
        answer = msg.body.get("buttonResponse")
        if answer:
            chose = f"{answer['type']} {answer['text']!r}"
            say(f"    buttonResponse: {chose} (payload {answer['payload']!r})")
        if msg.text:
            for line in msg.text.splitlines():
                say(f"    text: {line}")
        for item in msg.body.get("content") or []:
            if "attachment" in item:
                att = item["attachment"]
                mime = att.get("mime") or "type not verified"
                say(f"    attachment: {att['mediaType']} ({mime}) {att['url'][:60]}…")
            else:
                kind = item["contentType"]
                say(f"    {kind}: {item.get(kind[0].lower() + kind[1:])}")
        shown = {k: attrs[k] for k in ROUTING_ATTRIBUTES if k in attrs}
        if shown:
            say("    routing: " + ", ".join(f"{k}={v}" for k, v in shown.items()))

    def agent(self, title: str, to: str, text: str, **extra: Any) -> dict[str, Any] | None:
        """Genesys → relay: an agent's (or bot's) message; returns its final receipt."""
        say(f"\nGenesys → relay: {title}")
        sent_before = len(self.sb.meta.sent)
        body = self.sb.genesys.build_agent_message(to, text, **extra)
        resp = self.sb.genesys.post_agent_message(
            f"{self.relay}/webhooks/genesys", body, WEBHOOK_SECRET
        )
        say(f"  relay answered HTTP {resp.status_code} {resp.text}")
        receipts = self.sb.genesys.receipts
        if not _until(lambda: any(r["id"] == body["id"] for r in receipts)):
            say("  !! no receipt within 15 s")
            self.ok = False
            return None
        receipt = next(r for r in receipts if r["id"] == body["id"])
        for sent in self.sb.meta.sent[sent_before:]:
            self.show_send(sent)
        reasons = receipt.get("reasons") or []
        why = f": {reasons[0]['code']} — {reasons[0]['message']}" if reasons else ""
        say(f"  Genesys receipt: {receipt['status']}{why}")
        return receipt

    @staticmethod
    def show_send(sent: dict[str, Any]) -> None:
        to = sent["recipient"]
        whom = f"private reply to comment {to['comment_id']}" if "comment_id" in to else to["id"]
        tag = f" ({sent['messaging_type']} {sent['tag']})" if "tag" in sent else ""
        message = sent.get("message") or {}
        text = message.get("text", "")
        first = text.splitlines()[0] if text else ""
        more = " …" if "\n" in text else ""
        say(f"  Meta Send API received → {whom}{tag}: {first!r}{more} ({len(text.encode())} bytes)")
        for option in message.get("quick_replies") or []:
            say(f"    quick reply offered: {option['title']!r}")

    def expect(self, what: str, holds: bool) -> None:
        say(f"  {'✓' if holds else '!!'} {what}")
        self.ok = self.ok and holds

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.demo.relay.admin_url}/metrics", timeout=5).text
        total = 0.0
        for found, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
            if all(f'{k}="{v}"' in found for k, v in labels.items()):
                total += float(value)
        return total

    # -- the steps ------------------------------------------------------------------------
    def play(self) -> bool:
        sb = self.sb
        meta = sb.meta
        say("igbridge sandbox: every server below listens on 127.0.0.1 only")
        say(f"  relay             {self.relay}  (store: SQLite in {self.demo.work})")
        say(f"  relay admin       {self.demo.relay.admin_url}  (/metrics, /readyz, /healthz)")
        say(f"  Meta Graph sim    {sb.graph.url}")
        say(f"  Meta CDN sim      {sb.cdn.url}  (HTTPS, throwaway CA)")
        say(f"  Genesys Cloud sim {sb.genesys_server.url}")
        say(f"  CRM sim           {self.demo.crm_server.url}")
        hello = meta.verify_webhook(
            f"{self.relay}/webhooks/instagram", VERIFY_TOKEN, "challenge-42"
        )
        say(f"\nMeta verifies the webhook: HTTP {hello.status_code}, echoed {hello.text!r}")
        self.ok = hello.text == "challenge-42"

        say("\n── 1. A DM in, the agent's answer out")
        first = meta.messaging(CUSTOMER, {"text": "Hi! My order #4512 hasn't arrived yet 😟"})
        got = self.customer("a DM with an emoji", meta.webhook([first]))
        self.expect(
            "delivered with its routing attributes",
            got is not None and "ProfileUrl" in got.attributes,
        )
        before = len(sb.genesys.snapshot())
        resp = meta.deliver_webhook(f"{self.relay}/webhooks/instagram", meta.webhook([first]))
        say("\nInstagram → relay: the same webhook again (Meta retries)")
        say(f"  relay answered HTTP {resp.status_code} {resp.text}")
        photo = meta.messaging(
            CUSTOMER,
            {"attachments": [{"type": "image", "payload": {"url": sb.cdn_url(PHOTO_ASSET)}}]},
        )
        self.customer("a photo of the parcel", meta.webhook([photo]))
        self.expect(
            "the retry was dropped as a duplicate", len(sb.genesys.snapshot()) == before + 1
        )
        receipt = self.agent(
            "the agent answers", CUSTOMER, "Sorry about that, Ana! Let me check 🔎"
        )
        self.expect("receipt Delivered", receipt is not None and receipt["status"] == "Delivered")

        say("\n── 2. A reply over 1,000 bytes")
        sent_before = len(meta.sent)
        receipt = self.agent(
            f"a {len(LONG_REPLY.encode())}-byte tracking history", CUSTOMER, LONG_REPLY
        )
        parts = [s["message"]["text"] for s in meta.sent[sent_before:]]
        whole = [g for p in parts for g in regex.findall(r"\X", p)] == regex.findall(
            r"\X", LONG_REPLY
        )
        self.expect(
            f"split into {len(parts)} messages of {', '.join(str(len(p.encode())) for p in parts)} "
            "bytes, in order, no grapheme (👨‍👩‍👧‍👦, 🇧🇷) cut",
            len(parts) > 1 and all(len(p.encode()) <= 1000 for p in parts) and whole,
        )

        say("\n── 3. Quick replies and the customer's tap")
        options = [quick_reply("Track my order", "TRACK"), quick_reply("Talk to a person", "HUMAN")]
        self.agent(
            "the bot offers quick replies",
            CUSTOMER,
            "What would you like to do?",
            type="Structured",
            content=options,
            originatingEntity="Bot",
        )
        tap = self.customer(
            "Ana taps 'Track my order'", meta.tap_quick_reply(CUSTOMER, "Track my order")
        )
        self.expect(
            "Genesys got a structured response",
            tap is not None and tap.endpoint == "structured/response",
        )

        say("\n── 4. A story mention and the agent's answer")
        mention = meta.messaging(
            CUSTOMER,
            {
                "attachments": [
                    {"type": "story_mention", "payload": {"url": sb.cdn_url(STORY_ASSET)}}
                ]
            },
        )
        self.customer("Ana mentions the brand in her story", meta.webhook([mention]))
        self.agent("the agent thanks her", CUSTOMER, "Thanks for the shout-out! 💜")

        say("\n── 5. A comment and its private reply")
        comment = meta.webhooks.comment(FAN, "maria_s", "Does this come in blue? 💙 ¿y en azul?")
        self.customer("Maria comments on a post", comment)
        receipt = self.agent("the agent answers the comment", FAN, "Yes! I've sent you the link 💙")
        self.expect("sent as a private reply", "comment_id" in meta.sent[-1]["recipient"])

        say("\n── 6. The 24-hour window (Leo last wrote 25 hours ago)")
        late = meta.messaging(
            LATE, {"text": "Is the store open on Sunday?"}, ts_ms=_now_ms() - 25 * HOUR_MS
        )
        self.customer("Leo's message, dated 25 hours ago", meta.webhook([late]))
        bot = self.agent("the bot replies", LATE, "We open at 10:00 🕙", originatingEntity="Bot")
        self.expect(
            "the bot's reply is refused: MessageExpired",
            bot is not None
            and bot["status"] == "Failed"
            and bot["reasons"][0]["code"] == "MessageExpired",
        )
        human = self.agent("a person replies", LATE, "Hi Leo, yes: 10:00 to 16:00 on Sundays.")
        self.expect(
            "the person's reply is sent with the HUMAN_AGENT tag",
            human is not None
            and human["status"] == "Delivered"
            and meta.sent[-1].get("tag") == "HUMAN_AGENT",
        )

        say("\n── 7. SLA escalation (Sofia has waited 21 hours, nobody answered)")
        wait = meta.messaging(
            WAITING, {"text": "Hello? I need to change my address"}, ts_ms=_now_ms() - 21 * HOUR_MS
        )
        msg = self.customer("Sofia's message, dated 21 hours ago", meta.webhook([wait]))
        conv = msg.conversation_id if msg else ""
        changes = sb.genesys.priority_changes
        raised = _until(lambda: any(c == conv for c, _ in changes))
        priority = next((p for c, p in changes if c == conv), None)
        say(f"  Genesys received PATCH /api/v2/routing/conversations/{conv}: priority {priority}")
        self.expect("escalated before her 24-hour window closes", raised)

        say("\n── 8. The spam rule")
        spam = meta.messaging(SPAMMER, {"text": "Get FREE FOLLOWERS now!!! 🚀"})
        dropped_before = self.metric("igbridge_guard_total", outcome="dropped")
        resp = meta.deliver_webhook(f"{self.relay}/webhooks/instagram", meta.webhook([spam]))
        say(f"\nInstagram → relay: a spam DM\n  relay answered HTTP {resp.status_code} {resp.text}")
        caught = _until(
            lambda: self.metric("igbridge_guard_total", outcome="dropped") > dropped_before
        )
        reached = any(m.from_id == SPAMMER for m in sb.genesys.snapshot())
        dropped = self.metric("igbridge_guard_total", rule="keyword", outcome="dropped")
        say(f'  igbridge_guard_total{{rule="keyword",outcome="dropped"}} {dropped:.0f}')
        self.expect("dropped: Genesys received nothing from the spammer", caught and not reached)

        say(
            f"\nDelivered {self.metric('igbridge_delivered_total'):.0f}, "
            f"duplicates dropped {self.metric('igbridge_duplicates_total'):.0f}, "
            f"dead letters {self.metric('igbridge_dead_letters'):.0f}."
        )
        say(
            "The whole story: "
            + ("every step as expected." if self.ok else "SOME STEPS FAILED (!! above).")
        )
        return self.ok


def play(demo: DemoStack) -> bool:
    return Story(demo).play()
