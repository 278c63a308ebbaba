"""Whose conversation an Instagram event is, through a real relay and the simulators: another
account's entries, threads another app controls (standby), handovers, edits, and mentions
kept out of SLA escalation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from igbridge.relay.config import ConfigError, load_settings
from igbridge.relay.genesys.payloads import InboundMessage
from igbridge.relay.meta.events import EventKind, InstagramEvent, MessageEdit, parse_webhook
from igbridge.relay.pipeline.inbound import Facts, build
from igbridge.sandbox.meta_webhooks import MetaWebhooks
from igbridge.sandbox.stack import Sandbox, run_relay
from tests.fixtures_loader import ACCOUNT_ID, CUSTOMER, load_fixture_json
from tests.test_config import BASE_ENV

OTHER_ACCOUNT = "17841499999999999"  # another brand served by the same Meta app


def deliver(sandbox: Sandbox, relay_url: str, body: dict[str, object]) -> dict[str, bool]:
    resp = sandbox.meta.deliver_webhook(f"{relay_url}/webhooks/instagram", body)
    assert resp.status_code == 200, resp.text
    counts: dict[str, bool] = resp.json()
    return counts


def skipped_metric(relay_url: str, reason: str) -> str | None:
    prefix = f'igbridge_events_skipped_total{{reason="{reason}"}} '
    for line in httpx.get(f"{relay_url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def test_settings_for_entry_ids_and_standby() -> None:
    default = load_settings(BASE_ENV)
    assert (default.instagram_entry_ids, default.standby) == ((), "skip")
    env = {"IGBRIDGE_INSTAGRAM_ENTRY_IDS": " 25000001, ,26000001 ", "IGBRIDGE_STANDBY": "deliver"}
    s = load_settings({**BASE_ENV, **env})
    assert (s.instagram_entry_ids, s.standby) == (("25000001", "26000001"), "deliver")
    with pytest.raises(ConfigError, match=r"^IGBRIDGE_STANDBY: "):
        load_settings({**BASE_ENV, "IGBRIDGE_STANDBY": "forward"})


# -- parsing and building (pure) ---------------------------------------------------------------


def test_a_standby_thread_delivered_is_marked_and_stays_marked_when_stored() -> None:
    body = load_fixture_json("standby")
    (event,) = parse_webhook(body, ACCOUNT_ID, standby="deliver").events
    assert event.standby
    stored = InstagramEvent.from_json(event.to_json())
    assert stored == event
    assert stored.standby
    built = build(stored, Facts())
    assert isinstance(built, InboundMessage)
    assert built.channel.metadata is not None
    assert built.channel.metadata.custom_attributes["Standby"] == "true"
    assert built.text is not None
    assert built.text.startswith("Hi, is anyone there?\n(Another app controls this conversation")
    # Ordinary jobs are stored as before: no standby key for older replicas to trip on.
    (plain,) = parse_webhook(load_fixture_json("text"), ACCOUNT_ID).events
    assert b"standby" not in plain.to_json()


def test_edits_by_the_business_are_not_the_customers() -> None:
    def edit(sender: str, num_edit: object) -> dict[str, object]:
        item = {
            "sender": {"id": sender},
            "recipient": {"id": CUSTOMER if sender == ACCOUNT_ID else ACCOUNT_ID},
            "timestamp": 1767261600000,
            "message_edit": {"mid": "mid.e", "text": "fixed typo", "num_edit": num_edit},
        }
        return {"object": "instagram", "entry": [{"id": ACCOUNT_ID, "messaging": [item]}]}

    own = parse_webhook(edit(ACCOUNT_ID, 1), ACCOUNT_ID)
    assert own.events == []
    assert [s.reason for s in own.skipped] == ["own_edit"]
    # Meta's sample shows num_edit as a string; the documented type is an integer.
    (event,) = parse_webhook(edit(CUSTOMER, "2"), ACCOUNT_ID).events
    assert event.body == MessageEdit("mid.e", "fixed typo", 2)
    assert event.dedupe_key == "mid.e#edit:2"


def test_without_an_account_id_entries_are_not_checked() -> None:
    # parse_webhook(body) alone (tools, fuzzing) keeps every entry.
    assert len(parse_webhook(load_fixture_json("other_account")).events) == 3


# -- the builders parse as the relay expects (the simulator imports no relay code) ----------


def test_builders_make_the_shapes_meta_sends() -> None:
    hooks = MetaWebhooks("1784")
    edit = hooks.message_edit("6915", "mid.1", "new text", num_edit=2)
    take = hooks.handover(
        "6915", "take_thread_control", new_owner_app_id="42", previous_owner_app_id="7"
    )
    standby = hooks.standby(hooks.text("6915", "hello"))
    other = hooks.for_account(OTHER_ACCOUNT).text("6915", "hello")
    assert "standby" in standby["entry"][0]
    assert "messaging" not in standby["entry"][0]
    assert other["entry"][0]["id"] == OTHER_ACCOUNT
    assert [e.kind for e in parse_webhook(MetaWebhooks.batch(edit, take), "1784").events] == [
        EventKind.EDIT,
        EventKind.HANDOVER,
    ]
    assert [
        s.reason for s in parse_webhook(MetaWebhooks.batch(standby, other), "1784").skipped
    ] == [
        "standby",
        "other_account",
    ]


# -- another account --------------------------------------------------------------------------


def test_another_accounts_events_never_reach_this_channel(sandbox: Sandbox, tmp_path: Path) -> None:
    other = sandbox.meta.webhooks.for_account(OTHER_ACCOUNT)
    body = MetaWebhooks.batch(
        other.text("5001", "a DM for another brand"),
        other.comment("5002", "fan", "a comment on another brand's post"),
        sandbox.meta.webhooks.text("5003", "a DM for us"),
    )
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        counts = deliver(sandbox, relay.url, body)
        (msg,) = sandbox.genesys.wait_for_messages(1)
        assert skipped_metric(relay.admin_url, "other_account") == "2.0"
    # The ack stores the webhook as it came; the other account's items are skipped when
    # it is split into events, so only this account's message reaches Genesys.
    assert counts == {"stored": True}
    assert msg.text == "a DM for us"


def test_further_entry_ids_of_this_account_are_accepted(sandbox: Sandbox, tmp_path: Path) -> None:
    # With Instagram Login, entry.id is the app-scoped user id, which may differ from /me's.
    scoped = sandbox.meta.webhooks.for_account("25000000000000001")
    env = sandbox.relay_env(
        tmp_path / "r.db", IGBRIDGE_INSTAGRAM_ENTRY_IDS="25000000000000001, 26000000000000001"
    )
    with run_relay(env) as relay:
        deliver(sandbox, relay.url, scoped.text("5004", "hello from the scoped id"))
        (msg,) = sandbox.genesys.wait_for_messages(1)
    assert msg.text == "hello from the scoped id"


# -- conversation routing ----------------------------------------------------------------------


def test_standby_threads_are_skipped_by_default(sandbox: Sandbox, tmp_path: Path) -> None:
    hooks = sandbox.meta.webhooks
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        counts = deliver(sandbox, relay.url, hooks.standby(hooks.text("5005", "anyone there?")))
        deliver(sandbox, relay.url, hooks.text("5005", "to this channel"))
        (msg,) = sandbox.genesys.wait_for_messages(1)
        assert skipped_metric(relay.admin_url, "standby") == "1.0"
    assert counts == {"stored": True}
    assert msg.text == "to this channel"
    assert "Standby" not in msg.attributes


def test_standby_threads_delivered_marked_when_configured(sandbox: Sandbox, tmp_path: Path) -> None:
    hooks = sandbox.meta.webhooks
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_STANDBY="deliver")
    with run_relay(env) as relay:
        deliver(sandbox, relay.url, hooks.standby(hooks.text("5006", "anyone there?")))
        (msg,) = sandbox.genesys.wait_for_messages(1)
    assert msg.attributes["Standby"] == "true"
    assert msg.text is not None
    first, note = msg.text.split("\n")
    assert first == "anyone there?"
    assert "Another app controls this conversation" in note


def test_handover_and_edit_reach_the_agent_as_notes(sandbox: Sandbox, tmp_path: Path) -> None:
    hooks = sandbox.meta.webhooks
    with run_relay(sandbox.relay_env(tmp_path / "r.db")) as relay:
        deliver(sandbox, relay.url, hooks.text("5007", "size L please", mid="mid.5007.1"))
        deliver(sandbox, relay.url, hooks.message_edit("5007", "mid.5007.1", "size M please"))
        deliver(
            sandbox,
            relay.url,
            hooks.handover("5007", "take_thread_control", new_owner_app_id="1217981644879628"),
        )
        _, edit, take = sandbox.genesys.wait_for_messages(3)
    assert edit.attributes["EditedMessageId"] == "mid.5007.1"
    assert edit.text == (
        "✏️ The customer edited a message (id mid.5007.1, edit 1). New text: size M please"
    )
    assert take.attributes["HandoverAction"] == "take_thread_control"
    assert take.text is not None
    assert "took control of this conversation" in take.text
    assert "refused until it passes control back" in take.text


# -- mentions and SLA escalation ----------------------------------------------------------------


def test_a_mention_is_not_escalated(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.meta.add_mention("17850000000000601", "@ourbrand love it", "fan_601")
    hooks = sandbox.meta.webhooks
    env = sandbox.relay_env(
        tmp_path / "r.db", IGBRIDGE_WINDOW_ESCALATE_AFTER="1", IGBRIDGE_SLA_SWEEP_SECONDS="0.1"
    )
    with run_relay(env) as relay:
        deliver(sandbox, relay.url, hooks.mention("18000000000000601", "17850000000000601"))
        deliver(sandbox, relay.url, hooks.text("5008", "hello?"))
        mention, first = sandbox.genesys.wait_for_messages(2)
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.priority_changes) == 1)
        # Sweeps run one after another: once a later customer is escalated, the sweep that
        # would have escalated the (older) mention has long finished.
        deliver(sandbox, relay.url, hooks.text("5009", "hello too?"))
        *_, second = sandbox.genesys.wait_for_messages(3)
        assert sandbox.genesys.wait_for(lambda: len(sandbox.genesys.priority_changes) == 2)
    assert mention.attributes["Source"] == "Instagram_Mention"
    assert mention.text is not None
    assert "reply publicly" in mention.text
    assert [c for c, _ in sandbox.genesys.priority_changes] == [
        first.conversation_id,
        second.conversation_id,
    ]
