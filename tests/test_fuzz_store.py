"""The fuzz invariant in the store itself: a relay fed field-mutated, signed Instagram
webhooks and Genesys messages answers none of them with a 5xx, leaves no job behind (each
one delivered, set aside as not forwarded, or dead-lettered with a reason), and no
customer's queue is blocked: a last, valid message per customer still arrives.

Reproducible and bounded: the mutations come from a seeded generator over the same
fixtures and hostile values as tests/test_fuzz_fields.py, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from igbridge.relay.records import INBOUND, OUTBOUND
from igbridge.relay.store import open_store
from igbridge.sandbox.genesys_agent import build_agent_message, post_agent_message, sign_genesys
from igbridge.sandbox.meta_webhooks import sign_meta
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay
from tests.fixtures_loader import ACCOUNT_ID
from tests.test_fuzz_fields import (
    EVERY_FIELD_VALUES,
    GENESYS_BODIES,
    GENESYS_PATHS,
    INSTAGRAM_BODIES,
    INSTAGRAM_PATHS,
    mutated,
    signed_bytes,
)

INSTAGRAM_CASES = 140
GENESYS_CASES = 60
SEED = 20261206


def mutations(
    bodies: dict[str, Any], all_paths: dict[str, list[Any]], count: int, rng: random.Random
) -> list[Any]:
    """``count`` bodies, each a fixture with one to three fields given a hostile value."""
    names = sorted(bodies)
    found = []
    for _ in range(count):
        name = rng.choice(names)
        changes = [
            (rng.choice(all_paths[name]), rng.choice(EVERY_FIELD_VALUES))
            for _ in range(rng.randint(1, 3))
        ]
        found.append(mutated(bodies[name], changes))
    return found


def customers() -> list[str]:
    """The customers the Instagram fixtures write as (the senders that are not us)."""
    found: set[str] = set()
    for body in INSTAGRAM_BODIES.values():
        for entry in body.get("entry", []):
            for item in entry.get("messaging", []):
                sender = str(item.get("sender", {}).get("id", ""))
                if sender.isdigit() and sender != ACCOUNT_ID:
                    found.add(sender)
    return sorted(found)


def metric_sum(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded in time
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_mutated_webhooks_leave_no_job_behind_and_block_no_customer(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "r.db"
    env = sandbox.relay_env(
        db, IGBRIDGE_BACKOFF_CAP="0.2", IGBRIDGE_SEND_MAX_ATTEMPTS="2", IGBRIDGE_MEDIA_TIMEOUT="0.5"
    )
    integration = next(iter(sandbox.genesys.integration_ids))
    statuses: list[int] = []
    with run_relay(env) as relay, httpx.Client(timeout=20) as client:
        instagram = f"{relay.url}/webhooks/instagram"
        genesys = f"{relay.url}/webhooks/genesys"

        def post(url: str, raw: bytes, signature: str) -> int:
            # One kept-alive connection: the relay's work is the point, not the handshakes.
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
            return client.post(url, content=raw, headers=headers).status_code

        for body in mutations(INSTAGRAM_BODIES, INSTAGRAM_PATHS, INSTAGRAM_CASES, rng):
            raw = signed_bytes(body)
            statuses.append(post(instagram, raw, sign_meta(raw, sandbox.meta.app_secret)))
        for body in mutations(GENESYS_BODIES, GENESYS_PATHS, GENESYS_CASES, rng):
            raw = signed_bytes(body)
            statuses.append(post(genesys, raw, sign_genesys(raw, WEBHOOK_SECRET)))
        assert [s for s in statuses if s >= 500] == []
        assert any(s == 200 for s in statuses)  # the fixtures' shapes do get through

        # A last, valid message each way for every customer: none is held behind a
        # mutated one.
        people = customers()
        for igsid in people:
            item = sandbox.meta.messaging(igsid, {"text": f"last from {igsid}"})
            resp = sandbox.meta.deliver_webhook(instagram, sandbox.meta.webhook([item]))
            assert resp.status_code == 200, resp.text

        def inbound_arrived() -> bool:
            texts = {m.body.get("text") for m in sandbox.genesys.snapshot()}
            return all(f"last from {igsid}" in texts for igsid in people)

        assert wait_until(inbound_arrived, 20), "a customer's last message did not arrive"
        for igsid in people:
            reply = build_agent_message(integration, igsid, f"last to {igsid}")
            resp = post_agent_message(genesys, reply, WEBHOOK_SECRET)
            assert resp.status_code == 200, resp.text

        def outbound_arrived() -> bool:
            texts = {b.get("message", {}).get("text") for b in list(sandbox.meta.sent)}
            return all(f"last to {igsid}" in texts for igsid in people)

        assert wait_until(outbound_arrived, 20), "an agent's last reply was not sent"

        def drained() -> bool:
            return all(
                metric_sum(relay.admin_url, "igbridge_queue_depth", f'queue="{q}"') == 0
                for q in ("intake", INBOUND, OUTBOUND)
            )

        assert wait_until(drained, 20), "jobs left in a queue"
        assert metric_sum(relay.admin_url, "igbridge_handler_errors_total") == 0

    async def dead_letters() -> list[tuple[str, str]]:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            assert await store.depth(INBOUND) == 0
            assert await store.depth(OUTBOUND) == 0
            found = []
            for queue in (INBOUND, OUTBOUND):
                found += [(queue, d.reason) for d in await store.dead_letters(queue, 1000)]
            return found
        finally:
            await store.close()

    for queue, reason in asyncio.run(dead_letters()):
        assert reason.strip(), f"a dead letter in {queue} without a reason"
