"""Privacy: Meta's data-deletion callback, ``igbridge-relay forget``, the profile attribute
policy, and the retention the README states being the one the relay enforces."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

import httpx
import pytest

from igbridge.relay import records
from igbridge.relay.cli import main
from igbridge.relay.config import PROFILE_ATTRIBUTES, Settings
from igbridge.relay.pipeline.inbound import PROFILE_FIELDS
from igbridge.relay.records import Retention
from igbridge.relay.store import NewJob, SQLiteStore
from igbridge.relay.tasks.maintenance import prune
from igbridge.relay.web.deletion import Refused, parse_signed_request
from igbridge.sandbox.stack import Sandbox, run_relay
from tests.fixtures_loader import load_fixture
from tests.test_store_contract import Clock, _dump_sqlite

CUSTOMER = "6915500000000001"  # the sender of the "text" fixture
TEXT = "Hi, I need help with my order #4512"
ROUTE = "/webhooks/instagram/data-deletion"
README = Path(__file__).resolve().parent.parent / "README.md"


def signed_request(payload: object, secret: str, *, sig_secret: str | None = None) -> str:
    """As Meta builds it: base64url (unpadded) HMAC-SHA256 of the encoded payload part."""
    part = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    sig = hmac.new((sig_secret or secret).encode(), part, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(sig).rstrip(b"=").decode() + "." + part.decode()


GENUINE = {"algorithm": "HMAC-SHA256", "user_id": CUSTOMER, "issued_at": 1767261600}


# -- the signed request, pure --------------------------------------------------------------
def test_a_genuine_signed_request_names_its_user_under_any_current_secret() -> None:
    assert parse_signed_request(signed_request(GENUINE, "s2"), [b"s1", b"s2"]) == CUSTOMER
    numeric = {**GENUINE, "user_id": int(CUSTOMER)}
    assert parse_signed_request(signed_request(numeric, "s1"), [b"s1"]) == CUSTOMER


@pytest.mark.parametrize(
    ("signed", "status", "reason"),
    [
        (signed_request(GENUINE, "s1", sig_secret="forger"), 403, "signature mismatch"),
        ("no-dot-here", 400, "not <signature>.<payload>"),
        ("abc.%%%", 400, "not base64url JSON"),
        (signed_request([1, 2], "s1"), 400, "not a JSON object"),
        (signed_request({**GENUINE, "algorithm": "none"}, "s1"), 400, "algorithm"),
        (signed_request({"algorithm": "HMAC-SHA256"}, "s1"), 400, "user_id"),
        (signed_request({**GENUINE, "user_id": "1"}, "s1"), 400, "user_id"),
    ],
)
def test_a_forged_or_malformed_signed_request_is_refused_with_its_reason(
    signed: str, status: int, reason: str
) -> None:
    refused = parse_signed_request(signed, [b"s1"])
    assert isinstance(refused, Refused)
    assert refused.status == status
    assert reason in refused.reason


# -- the callback through a relay ----------------------------------------------------------
def test_a_signed_deletion_request_erases_the_customer_and_its_status_url_answers(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    env = sandbox.relay_env(
        db,
        IGBRIDGE_PROFILE_ATTRIBUTES="InstagramUsername",
        IGBRIDGE_PUBLIC_URL="https://relay.example.com/shop/",
    )
    sandbox.meta.add_user(CUSTOMER, "quiet_lane_customer", follower_count=1200)
    with run_relay(env) as relay:
        ack = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", load_fixture("text"))
        assert ack.status_code == 200
        (delivered,) = sandbox.genesys.wait_for_messages(1)
        # The attribute policy: the username only, and what routing needs whatever it says.
        attrs = delivered.body["channel"]["metadata"]["customAttributes"]
        assert "InstagramUsername" in attrs
        assert {"Source", "ProfileUrl"} <= set(attrs)
        assert not set(attrs) & (PROFILE_FIELDS - {"InstagramUsername"})
        before = "\n".join(asyncio.run(_dump_sqlite(db)))
        assert CUSTOMER in before  # the relay does keep things about them

        url = f"{relay.url}{ROUTE}"
        forged = httpx.post(url, data={"signed_request": signed_request(GENUINE, "forger")})
        assert forged.status_code == 403
        assert "signature" in forged.json()["error"]
        assert httpx.post(url, data={"other": "x"}).status_code == 400
        answer = httpx.post(
            url, data={"signed_request": signed_request(GENUINE, sandbox.meta.app_secret)}
        )
        assert answer.status_code == 200
        code = answer.json()["confirmation_code"]
        assert answer.json()["url"] == f"https://relay.example.com/shop{ROUTE}/{code}"

        status = httpx.get(f"{relay.url}{ROUTE}/{code}")
        assert status.status_code == 200
        assert status.json()["status"] == "completed"
        assert status.json()["removed"]["windows"] == 1
        assert httpx.get(f"{relay.url}{ROUTE}/{'x' * 24}").status_code == 404
        metrics = httpx.get(f"{relay.admin_url}/metrics").text
        assert re.search(rf'route="{ROUTE}",status="403"}} 1\.0', metrics)

        after = asyncio.run(_dump_sqlite(db))
        for line in after:
            assert CUSTOMER not in line, line
            assert TEXT not in line, line


# -- forget from the command line -----------------------------------------------------------
def test_forget_command_prints_what_it_removed_and_refuses_a_short_id(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "f.db"
    for name, value in sandbox.relay_env(db).items():
        monkeypatch.setenv(name, value)

    async def seed() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        try:
            job = NewJob(CUSTOMER, "m1", 1, json.dumps({"text": TEXT}).encode())
            await store.enqueue("inbound", [job], {CUSTOMER: 5})
            await store.put_record("conversation", CUSTOMER, b"{}")
        finally:
            await store.close()

    asyncio.run(seed())
    assert main(["forget", CUSTOMER]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "jobs 1",
        "dead_letters 0",
        "windows 1",
        "records 1",
        "dedupe 0",
        "intake 0",
        "total 3",
    ]
    assert all(CUSTOMER not in row for row in asyncio.run(_dump_sqlite(db)))
    assert main(["forget", "12"]) == 2
    assert "6 to 32 digits" in capsys.readouterr().err


# -- retention ------------------------------------------------------------------------------
def test_maintenance_forgets_what_is_past_its_retention_and_blanks_old_dead_letter_text(
    tmp_path: Path,
) -> None:
    retention = Retention(
        dedupe_seconds=2 * 86400,
        dead_letter_seconds=10 * 86400,
        dead_letter_payload_seconds=86400,
        window_seconds=2 * 86400,
        records_seconds=3600,
    )

    async def body() -> None:
        clock = Clock()
        store = SQLiteStore(str(tmp_path / "m.db"), clock=clock)
        await store.open()
        records.limit_customer_records(retention.records_seconds)
        try:
            await store.enqueue(
                "inbound", [NewJob(CUSTOMER, "m1", 1, b'{"t":"x"}')], {CUSTOMER: 1_000_000_000}
            )
            (job,) = await store.claim("inbound", 1, 30)
            await store.dead_letter(job, "refused")
            await records.put(store, records.LOOP_STATE, CUSTOMER, records.LoopActivity())
            await records.put(store, records.TOTALS, "delivered", 5)  # the relay's, not theirs
            clock.now += 1800
            assert (await prune(store, retention))["records"] == 0  # within its hour
            clock.now += 3 * 86400
            done = await prune(store, retention)
            assert done["records"] == 1
            assert await records.get(store, records.LOOP_STATE, CUSTOMER) is None
            assert await records.get(store, records.TOTALS, "delivered") == 5
            assert done["dead_letter_payloads"] == 1
            assert done["windows"] == 1
            assert done["dedupe"] == 1
            (letter,) = await store.dead_letters("inbound")
            assert (letter.payload, letter.reason, letter.dedupe_key) == (b"", "refused", "m1")
            clock.now += 8 * 86400
            assert (await prune(store, retention))["dead_letters"] == 1
        finally:
            records.limit_customer_records(records.CUSTOMER_RECORD_RETENTION_SECONDS)
            await store.close()

    asyncio.run(body())


_UNITS = {"hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def readme_retention() -> dict[str, float]:
    """The README privacy table: setting → its default, in seconds."""
    text = README.read_text()
    table = text[text.index("### What the relay stores, why, and for how long") :]
    found: dict[str, float] = {}
    for row in re.finditer(
        r"^\|[^|\n]*\|[^|\n]*\|\s*([^|\n]+?)\s*\|\s*`(IGBRIDGE_[A-Z_]+)`", table, re.M
    ):
        amount = re.fullmatch(r"(\d+) (hours?|days?)", row.group(1))
        assert amount is not None, row.group(0)
        found[row.group(2)] = int(amount.group(1)) * _UNITS[amount.group(2)]
    return found


def test_the_readme_table_states_the_retention_the_settings_enforce() -> None:
    stated = readme_retention()
    fields = {
        f"IGBRIDGE_{name.upper()}": info.default
        for name, info in Settings.model_fields.items()
        if name.startswith("retention_")
    }
    assert stated == fields
    defaults = Retention()
    assert fields == {
        "IGBRIDGE_RETENTION_DEDUPE_SECONDS": defaults.dedupe_seconds,
        "IGBRIDGE_RETENTION_DEAD_LETTER_SECONDS": defaults.dead_letter_seconds,
        "IGBRIDGE_RETENTION_DEAD_LETTER_PAYLOAD_SECONDS": defaults.dead_letter_payload_seconds,
        "IGBRIDGE_RETENTION_WINDOW_SECONDS": defaults.window_seconds,
        "IGBRIDGE_RETENTION_RECORDS_SECONDS": defaults.records_seconds,
    }


def test_the_attribute_policy_knows_the_attributes_the_pipeline_makes() -> None:
    assert set(PROFILE_ATTRIBUTES) == PROFILE_FIELDS
