"""Refused credentials through a real relay and both simulators on 127.0.0.1: the relay
stays in service, says what is wrong, keeps the messages and recovers by itself."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from igbridge.relay.channel_status import API_VERSION, KIND
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.stack import WEBHOOK_SECRET, Sandbox, run_relay
from tests.cluster import Cluster, run_cluster

NAMESPACE = "default"
CUSTOMER = "7001"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def credentials_ok(relay_url: str, platform: str) -> float | None:
    text = httpx.get(f"{relay_url}/metrics").text
    found = re.search(rf'^igbridge_credentials_ok{{platform="{platform}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def problems(relay_url: str) -> dict[str, str]:
    resp = httpx.get(f"{relay_url}/readyz")
    assert resp.status_code == 200, resp.text  # credentials never make the pod unready
    assert resp.json()["status"] == "ready"
    found: dict[str, str] = resp.json().get("problems", {})
    return found


def dm(sb: Sandbox, relay_url: str, text: str, who: str = CUSTOMER) -> None:
    body = sb.meta.webhook([sb.meta.messaging(who, {"text": text})])
    resp = sb.meta.deliver_webhook(f"{relay_url}/webhooks/instagram", body)
    assert resp.status_code == 200, resp.text


def refuse_client(genesys: GenesysSimulator) -> str:
    """Genesys stops accepting the relay's OAuth client (its secret was regenerated, the
    client disabled); returns the secret that works again."""
    working = genesys.client_secret
    genesys.client_secret = "regenerated-in-genesys-admin"
    return working


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        monkeypatch.setenv("KUBECONFIG", str(c.kubeconfig))
        c.apply(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "shop", "namespace": NAMESPACE},
                "spec": {},
            }
        )
        yield c


def test_refused_genesys_credentials_keep_the_relay_in_service_and_the_dm_is_delivered_once_fixed(
    sandbox: Sandbox, tmp_path: Path, cluster: Cluster
) -> None:
    env = sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_CREDENTIALS_RECHECK_CAP="1",
        IGBRIDGE_BACKOFF_CAP="0.5",
        IGBRIDGE_CHANNEL_NAME="shop",
        IGBRIDGE_CHANNEL_NAMESPACE=NAMESPACE,
        IGBRIDGE_POD_NAME="shop-relay-0",
        IGBRIDGE_STATUS_INTERVAL="0.3",
    )
    working = refuse_client(sandbox.genesys)
    with run_relay(env) as relay:
        wait_until(lambda: "genesys" in problems(relay.admin_url), "the refusal to be reported")
        assert "IGBRIDGE_GENESYS_CLIENT_SECRET" in problems(relay.admin_url)["genesys"]
        assert credentials_ok(relay.admin_url, "genesys") == 0
        assert credentials_ok(relay.admin_url, "instagram") == 1
        dm(sandbox, relay.url, "is my order on its way?")

        def reported() -> str:
            found = cluster.get("instagramchannels", NAMESPACE, "shop") or {}
            return str(((found.get("status") or {}).get("relay") or {}).get("lastError"))

        wait_until(lambda: "Genesys refused" in reported(), "the channel's status to say it")
        assert sandbox.genesys.messages == []

        sandbox.genesys.client_secret = working  # fixed in Genesys; the relay is not touched
        (msg,) = sandbox.genesys.wait_for_messages(1, timeout=20)
        assert msg.text == "is my order on its way?"
        wait_until(lambda: problems(relay.admin_url) == {}, "the problem to clear")
        assert credentials_ok(relay.admin_url, "genesys") == 1
        wait_until(lambda: reported() == "None", "the channel's status to clear")
    assert sandbox.genesys.wait_for(2, timeout=0.5) is False  # delivered once


def test_probing_readyz_asks_genesys_for_no_tokens(sandbox: Sandbox, tmp_path: Path) -> None:
    env = sandbox.relay_env(tmp_path / "r.db")
    refuse_client(sandbox.genesys)
    with run_relay(env) as relay:
        wait_until(lambda: "genesys" in problems(relay.admin_url), "the refusal to be reported")
        before = sandbox.genesys.token_requests
        for _ in range(100):
            assert "genesys" in problems(relay.admin_url)
        # Only the re-check task asks, after 1, 2, 4 ... seconds: a handful at most.
        assert sandbox.genesys.token_requests - before <= 3
    assert sandbox.genesys.token_grants == 0


def test_a_revoked_instagram_token_recovers_without_an_agent_send(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = sandbox.meta.add_token("page-token-1")
    env = sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_META_ACCESS_TOKEN="page-token-1",
        IGBRIDGE_CREDENTIALS_RECHECK_CAP="1",
    )
    with run_relay(env) as relay:
        dm(sandbox, relay.url, "hello")
        sandbox.genesys.wait_for_messages(1)
        assert problems(relay.admin_url) == {}
        token.valid = False  # a password change at Meta, say
        reply = sandbox.genesys.build_agent_message(CUSTOMER, "Hi!")
        sent = sandbox.genesys.post_agent_message(
            f"{relay.url}/webhooks/genesys", reply, WEBHOOK_SECRET
        )
        assert sent.status_code == 200
        wait_until(lambda: "instagram" in problems(relay.admin_url), "the 190 to be reported")
        assert "code 190" in problems(relay.admin_url)["instagram"]
        assert credentials_ok(relay.admin_url, "instagram") == 0
        token.valid = True  # Meta takes the token again
        wait_until(lambda: problems(relay.admin_url) == {}, "the problem to clear")
        assert credentials_ok(relay.admin_url, "instagram") == 1
    assert sandbox.meta.sent == []  # recovered without any further send


def test_rotated_secret_files_are_picked_up_without_a_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    secret_file, token_file = tmp_path / "client-secret", tmp_path / "access-token"
    secret_file.write_text("an-old-secret\n")
    token_file.write_text("an-expired-token\n")
    env = sandbox.relay_env(
        tmp_path / "r.db",
        IGBRIDGE_CREDENTIALS_RECHECK_CAP="1",
        IGBRIDGE_BACKOFF_CAP="0.5",
        IGBRIDGE_GENESYS_CLIENT_SECRET_FILE=str(secret_file),
        IGBRIDGE_META_ACCESS_TOKEN_FILE=str(token_file),
    )
    del env["IGBRIDGE_GENESYS_CLIENT_SECRET"], env["IGBRIDGE_META_ACCESS_TOKEN"]
    with run_relay(env) as relay:
        wait_until(
            lambda: set(problems(relay.admin_url)) == {"genesys", "instagram"}, "both refusals"
        )
        dm(sandbox, relay.url, "anyone there?")
        # The Secrets are updated: Kubernetes swaps the mounted files.
        secret_file.write_text(sandbox.genesys.client_secret + "\n")
        token_file.write_text(sandbox.meta.access_token + "\n")
        (msg,) = sandbox.genesys.wait_for_messages(1, timeout=20)
        assert msg.text == "anyone there?"
        wait_until(lambda: problems(relay.admin_url) == {}, "both problems to clear")
        reply = sandbox.genesys.build_agent_message(CUSTOMER, "Yes, here!")
        sandbox.genesys.post_agent_message(f"{relay.url}/webhooks/genesys", reply, WEBHOOK_SECRET)
        wait_until(lambda: len(sandbox.meta.sent) == 1, "the reply to go out with the new token")
