"""``igbridge-relay sandbox``: the relay between the Meta and Genesys simulators, on loopback,
playing a short conversation a person can watch."""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

from .genesys_sim import RecordedMessage
from .stack import VERIFY_TOKEN, Sandbox, run_relay, run_sandbox

CUSTOMER = "6915500000000001"
FAN = "6915500000000003"


def _say(line: str = "") -> None:
    print(line, flush=True)


def _show(msg: RecordedMessage) -> None:
    attrs = msg.attributes
    sender = msg.body["channel"]["from"].get("nickname") or msg.body["channel"]["from"]["id"]
    _say(f"  Genesys received [{attrs.get('Source')}/{attrs.get('EventType')}] from {sender}")
    if msg.text:
        for line in msg.text.splitlines():
            _say(f"    text: {line}")
    for item in msg.body.get("content") or []:
        att = item["attachment"]
        mime = att.get("mime") or "type not verified"
        _say(f"    attachment: {att['mediaType']} ({mime}) {att['url'][:60]}…")
    if "ProfileUrl" in attrs:
        _say(f"    profile: {attrs['ProfileUrl']}")


def _conversation(sb: Sandbox) -> list[tuple[str, dict[str, Any], int]]:
    meta = sb.meta
    first = meta.messaging(CUSTOMER, {"text": "Hi! My order #4512 hasn't arrived yet 😟"})
    photo = meta.messaging(
        CUSTOMER, {"attachments": [{"type": "image", "payload": {"url": sb.cdn_url("5001")}}]}
    )
    mention = meta.messaging(
        CUSTOMER,
        {"attachments": [{"type": "story_mention", "payload": {"url": sb.cdn_url("5002")}}]},
    )
    comment = {
        "field": "comments",
        "value": {
            "id": "17850000000000001",
            "text": "Does this come in blue? 💙 ¿y en azul?",
            "from": {"id": FAN, "username": "maria_s"},
            "media": {"id": "18000000000000001", "media_product_type": "FEED"},
        },
    }
    unsend = meta.messaging(CUSTOMER, {"mid": first["message"]["mid"], "is_deleted": True})
    return [
        ("a DM with an emoji", meta.webhook([first]), 1),
        ("the same webhook again (Meta retries)", meta.webhook([first]), 0),
        ("a photo of the parcel", meta.webhook([photo]), 1),
        ("a story mentioning the brand", meta.webhook([mention]), 1),
        ("a comment on a post", meta.webhook(changes=[comment]), 1),
        ("the customer unsends a message", meta.webhook([unsend]), 1),
    ]


def _metric(relay_url: str, name: str) -> float:
    text = httpx.get(f"{relay_url}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE))


def run_demo(*, keep_running: bool = False, port: int = 0) -> int:
    with tempfile.TemporaryDirectory(prefix="igbridge-sandbox-") as tmp:
        work = Path(tmp)
        with run_sandbox(work) as sb:
            sb.meta.add_media("5001", "image/jpeg")
            sb.meta.add_media("5002", "video/mp4")
            sb.meta.add_user(CUSTOMER, "ana.customer", name="Ana Lima", follower_count=1520)
            env = sb.relay_env(work / "igbridge.db")
            with run_relay(env, port=port) as relay:
                return _play(sb, relay.url, keep_running, work)


def _play(sb: Sandbox, relay_url: str, keep_running: bool, work: Path) -> int:
    webhook = f"{relay_url}/webhooks/instagram"
    _say("igbridge sandbox: every server below listens on 127.0.0.1 only")
    _say(f"  relay             {relay_url}  (store: SQLite in {work})")
    _say(f"  Meta Graph sim    {sb.graph.url}")
    _say(f"  Meta CDN sim      {sb.cdn.url}  (HTTPS, throwaway CA)")
    _say(f"  Genesys Cloud sim {sb.genesys_server.url}")
    handshake = sb.meta.verify_webhook(webhook, VERIFY_TOKEN, "challenge-42")
    _say(f"\nMeta verifies the webhook: HTTP {handshake.status_code}, echoed {handshake.text!r}")
    ok = handshake.text == "challenge-42"
    expected = 0
    for title, body, new in _conversation(sb):
        _say(f"\nInstagram → relay: {title}")
        resp = sb.meta.deliver_webhook(webhook, body)
        _say(f"  relay answered HTTP {resp.status_code} {resp.text}")
        expected += new
        got = sb.genesys.wait_for_messages(expected, timeout=15)
        if len(got) < expected:
            _say("  !! not delivered in 15 s")
            ok = False
        elif new:
            _show(got[expected - 1])
    _say(
        f"\nDelivered {_metric(relay_url, 'igbridge_delivered_total'):.0f}, "
        f"duplicates dropped {_metric(relay_url, 'igbridge_duplicates_total'):.0f}, "
        f"dead letters {_metric(relay_url, 'igbridge_dead_letters'):.0f}. "
        f"Metrics: {relay_url}/metrics"
    )
    if keep_running:
        _say("Still running; Ctrl-C stops everything.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0 if ok else 1
