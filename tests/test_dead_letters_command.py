"""``igbridge-relay dead-letters`` as an operator runs it beside a running relay: a message
Genesys refused for good is listed without its text, shown with it, replayed once the
cause is fixed and then delivered by the relay (no restart), or purged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess
from tests.harness.redis_server import RedisServer

CUSTOMER = "9071"
TEXT = "my order number is 4471, please help 🙏"
MESSAGES = "/api/v2/conversations/messages/"
INVALID = {"status": 400, "code": "bad.request", "message": "invalid message"}


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.relay", "dead-letters", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listed(env: dict[str, str]) -> list[list[str]]:
    """``list``'s rows (the header checked and left out)."""
    result = command(env, "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split("\t") == ["ID", "QUEUE", "CUSTOMER", "ATTEMPTS", "FAILED_AT", "REASON"]
    return [row.split("\t") for row in rows]


def wait_listed(env: dict[str, str], count: int, timeout: float = 30.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(rows := listed(env)) >= count:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} dead letters after {timeout}s")


def dead_letter_one(sandbox: Sandbox, relay: RelayProcess, text: str) -> None:
    sandbox.genesys.faults.add(Fault(status=400, body=INVALID, count=1, path_prefix=MESSAGES))
    body = sandbox.meta.webhook([sandbox.meta.messaging(CUSTOMER, {"text": text})])
    assert sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body).status_code == 200


@pytest.fixture(params=["sqlite", "redis"])
def running(
    request: pytest.FixtureRequest, sandbox: Sandbox, tmp_path: Path
) -> Iterator[tuple[dict[str, str], RelayProcess]]:
    env = sandbox.relay_env(tmp_path / "relay.db")
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        env["IGBRIDGE_STORE_URL"] = redis.url
        env["IGBRIDGE_STORE_PREFIX"] = f"dl-{tmp_path.name}"
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    yield env, relay
    relay.stop()


def test_a_refused_message_is_listed_without_text_shown_replayed_and_delivered(
    sandbox: Sandbox, running: tuple[dict[str, str], RelayProcess]
) -> None:
    env, relay = running
    dead_letter_one(sandbox, relay, TEXT)
    ((dead_id, queue, customer, attempts, failed_at, reason),) = wait_listed(env, 1)
    assert (queue, customer, attempts) == ("inbound", CUSTOMER, "1")
    assert failed_at.endswith("Z")
    assert "400" in reason
    assert "4471" not in command(env, "list").stdout  # no message text in the listing
    assert sandbox.genesys.snapshot() == []

    shown = command(env, "show", dead_id)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["id"], doc["queue"], doc["customer"]) == (int(dead_id), "inbound", CUSTOMER)
    assert TEXT in json.dumps(doc["payload"], ensure_ascii=False)

    # The cause is gone (the fault was used up): the replay is delivered by the running relay.
    replayed = command(env, "replay", dead_id)
    assert (replayed.returncode, replayed.stdout.strip()) == (0, f"replayed inbound {dead_id}")
    (got,) = sandbox.genesys.wait_for_messages(1, timeout=30)
    assert got.text == TEXT
    assert got.body["channel"]["from"]["id"] == CUSTOMER
    assert listed(env) == []
    assert command(env, "replay", dead_id).returncode == 1  # gone: nothing to replay twice
    assert command(env, "show", dead_id).returncode == 1


def test_purge_by_id_and_all_and_the_exit_codes(
    sandbox: Sandbox, running: tuple[dict[str, str], RelayProcess]
) -> None:
    env, relay = running
    dead_letter_one(sandbox, relay, "first")
    ((first, *_),) = wait_listed(env, 1)
    dead_letter_one(sandbox, relay, "second")
    (second,) = {row[0] for row in wait_listed(env, 2)} - {first}

    purged = command(env, "purge", first)
    assert (purged.returncode, purged.stdout.strip()) == (0, f"purged inbound {first}")
    assert [row[0] for row in listed(env)] == [second]
    assert command(env, "purge", first).returncode == 1
    # Younger than a day: --older-than keeps it; --all without it removes it.
    assert command(env, "purge", "--all", "--older-than", "1d").stdout.strip() == "purged 0"
    assert command(env, "purge", "--all").stdout.strip() == "purged 1"
    assert listed(env) == []
    assert sandbox.genesys.snapshot() == []  # purged, never delivered

    assert command(env, "replay").returncode == 2  # neither an id nor --all
    assert command(env, "purge", "1", "--all").returncode == 2
    assert command(env, "purge", "--all", "--older-than", "soon").returncode == 2
    broken = command({**env, "IGBRIDGE_STORE_URL": "redis://:hunter2@127.0.0.1:0/0"}, "list")
    assert broken.returncode == 2
    assert "IGBRIDGE_STORE_URL" in broken.stderr
    assert "hunter2" not in broken.stderr


def test_replay_all_delivers_a_customers_messages_in_their_order(
    sandbox: Sandbox, running: tuple[dict[str, str], RelayProcess]
) -> None:
    env, relay = running
    sandbox.genesys.faults.add(Fault(status=400, body=INVALID, count=3, path_prefix=MESSAGES))
    texts = [f"part {n} of my question" for n in range(3)]
    for n, text in enumerate(texts):
        body = sandbox.meta.webhook(
            [sandbox.meta.messaging(CUSTOMER, {"text": text}, ts_ms=int(time.time() * 1000) + n)]
        )
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
        assert resp.status_code == 200
    assert len(wait_listed(env, 3)) == 3
    replayed = command(env, "replay", "--all", "--queue", "inbound")
    assert (replayed.returncode, replayed.stdout.strip()) == (0, "replayed 3")
    got = sandbox.genesys.wait_for_messages(3, timeout=30)
    assert [m.text for m in got] == texts
    assert listed(env) == []
