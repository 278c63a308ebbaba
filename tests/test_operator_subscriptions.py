"""Meta's webhook subscription on the edge the channel's login type uses, as the Meta
simulator judges it: Facebook Login subscribes the linked Page with Page fields, Instagram
Login the Instagram account with Instagram fields; the operator on the cluster emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from igbridge.operator.problems import SpecProblem
from igbridge.operator.spec import parse_spec
from igbridge.operator.subscriptions import INSTAGRAM_FIELDS
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import (
    NAMESPACE,
    condition,
    run_operator,
    secrets_and_channel,
    wait_until,
)

IG_TOKEN = "IGAA-shop-instagram-login"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def webhook(cluster: Cluster) -> dict[str, Any]:
    return condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "WebhookSubscribed")


def settled(cluster: Cluster) -> bool:
    return webhook(cluster).get("status") in ("True", "False")


def apply_all(cluster: Cluster, manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        cluster.apply(manifest)


def instagram_login(sandbox: Sandbox, token: str = IG_TOKEN) -> list[dict[str, Any]]:
    manifests = secrets_and_channel(sandbox)
    manifests[0]["stringData"]["access-token"] = token
    ig = manifests[2]["spec"]["instagram"]
    ig["login"] = "instagram"
    del ig["pageId"]
    return manifests


def test_facebook_login_subscribes_the_page_with_page_fields(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    meta = sandbox.meta
    # Another Page field the app already had stays subscribed.
    meta.page_subscriptions.append("messages")
    with run_operator(cluster):
        apply_all(cluster, secrets_and_channel(sandbox))  # login defaults to facebook
        wait_until(lambda: settled(cluster), what="WebhookSubscribed")
        cond = webhook(cluster)
        assert (cond["status"], cond["reason"]) == ("True", "Subscribed"), cond
        assert meta.page_subscriptions == ["feed", "messages"]
        assert meta.subscriptions == []  # the Instagram account's edge is left alone
        # The condition says which edge and which fields, as Meta reads them back.
        assert f"Page {meta.page_id}" in cond["message"]
        assert f"/{meta.page_id}/subscribed_apps" in cond["message"]
        assert "feed, messages" in cond["message"]
        assert meta.access_token not in cond["message"]


def test_instagram_login_subscribes_the_account_with_instagram_fields(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    meta = sandbox.meta
    meta.add_token(IG_TOKEN, kind="instagram", expires_in=60 * 86400)
    with run_operator(cluster):
        apply_all(cluster, instagram_login(sandbox))
        wait_until(lambda: settled(cluster), what="WebhookSubscribed")
        cond = webhook(cluster)
        assert (cond["status"], cond["reason"]) == ("True", "Subscribed"), cond
        assert "message_edit" in meta.subscriptions
        assert sorted(meta.subscriptions) == sorted(INSTAGRAM_FIELDS)
        assert "mentions" not in meta.subscriptions  # Facebook Login only
        assert meta.page_subscriptions == []
        assert f"Instagram account {meta.account_id}" in cond["message"]
        assert "message_edit" in cond["message"]
        # Meta drops the subscription: the next resync puts it back.
        meta.drop_subscription()
        wait_until(lambda: "message_edit" in meta.subscriptions, what="re-subscribed")


def test_the_instagram_edge_with_a_page_token_is_refused_and_said(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    """What the operator used to do with Facebook Login: the Instagram account's edge with
    a Page token. Meta refuses it, and the channel says so instead of claiming webhooks."""
    with run_operator(cluster):
        apply_all(cluster, instagram_login(sandbox, token=sandbox.meta.access_token))
        wait_until(lambda: settled(cluster), what="WebhookSubscribed")
        cond = webhook(cluster)
        assert (cond["status"], cond["reason"]) == ("False", "SubscribeFailed"), cond
        assert "nonexisting field (subscribed_apps)" in cond["message"]
        assert "code 100" in cond["message"]
        assert sandbox.meta.subscriptions == sandbox.meta.page_subscriptions == []


def test_instagram_fields_on_the_page_are_refused_and_said(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    manifests = secrets_and_channel(sandbox)
    manifests[2]["spec"]["instagram"]["pageSubscribedFields"] = ["comments", "mentions"]
    with run_operator(cluster):
        apply_all(cluster, manifests)
        wait_until(lambda: settled(cluster), what="WebhookSubscribed")
        cond = webhook(cluster)
        assert (cond["status"], cond["reason"]) == ("False", "SubscribeFailed"), cond
        assert 'got "comments"' in cond["message"]
        assert "not subscribed to comments, mentions" in cond["message"]
        assert sandbox.meta.page_subscriptions == []


def test_facebook_login_without_a_page_is_an_invalid_spec(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    manifests = secrets_and_channel(sandbox)
    del manifests[2]["spec"]["instagram"]["pageId"]
    with run_operator(cluster):
        apply_all(cluster, manifests)
        wait_until(
            lambda: bool(condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "Synced")),
            what="Synced",
        )
        synced = condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "Synced")
        assert (synced["status"], synced["reason"]) == ("False", "InvalidSpec")
        assert "pageId" in synced["message"]
        assert sandbox.meta.subscriptions == sandbox.meta.page_subscriptions == []


# -- the spec: which login, which host -----------------------------------------------------


def spec(**instagram: Any) -> dict[str, Any]:
    return {
        "publicUrl": "https://shop.example.com/ig",
        "instagram": {"accountId": "1784", "credentialsSecretRef": {"name": "m"}, **instagram},
        "genesys": {"region": "mypurecloud.ie", "credentialsSecretRef": {"name": "g"}},
    }


@pytest.mark.parametrize(
    ("instagram", "graph_url"),
    [
        ({"pageId": "1020"}, "https://graph.facebook.com"),
        ({"login": "instagram"}, "https://graph.instagram.com"),
        ({"login": "instagram", "graphUrl": "http://127.0.0.1:9/"}, "http://127.0.0.1:9"),
        ({"subscribeWebhooks": False}, "https://graph.facebook.com"),
    ],
)
def test_the_graph_host_follows_the_login(instagram: dict[str, Any], graph_url: str) -> None:
    assert parse_spec(spec(**instagram)).instagram.graph_url == graph_url


@pytest.mark.parametrize(
    ("instagram", "says"),
    [
        ({}, "pageId"),
        ({"login": "instagram", "graphUrl": "https://graph.facebook.com"}, "graphUrl"),
        ({"pageId": "1020", "graphUrl": "https://graph.instagram.com/"}, "graphUrl"),
        ({"login": "messenger"}, "login"),
        ({"pageId": "1020", "pageSubscribedFields": []}, "pageSubscribedFields"),
    ],
)
def test_inconsistent_logins_are_refused(instagram: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecProblem) as problem:
        parse_spec(spec(**instagram))
    assert says in str(problem.value)
