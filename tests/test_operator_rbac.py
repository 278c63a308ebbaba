"""The chart's RBAC against what the operator really does: every request kopf and the
operator make through a channel's life (created, scaled out and back, deleted) is
recorded by the cluster emulator, and the rendered Role must grant each one and grant
nothing else but the few rules kept on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import NAMESPACE, run_operator, secrets_and_channel, wait_until
from tests.test_chart import by_kind, render, rules

# Granted though the code never calls them, each for a reason.
KEPT: dict[tuple[str, str, str], str] = {
    # The relay's Role, which the operator creates, grants these; RBAC lets the operator
    # grant only what it holds itself. (The operator itself gets instagramchannels: a
    # fresh look before it creates an integration or deletes one.)
    ("igbridge.dev", "instagramchannels/status", "get"): "granted to relays",
    # blockOwnerDeletion on owned objects needs it where OwnerReferencesPermissionEnforcement
    # runs (OpenShift); the emulator does not enforce it.
    ("igbridge.dev", "instagramchannels/finalizers", "update"): "blockOwnerDeletion",
}
CLIENTS = {"kopf", "OpenAPI-Generator"}  # kopf's own requests, and the operator's Kube


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def relay_spec(replicas: int) -> dict[str, Any]:
    return {"replicas": replicas, "store": {"redisSecretRef": {"name": "shop-redis"}}}


def test_the_role_grants_exactly_what_the_operator_uses(sandbox: Sandbox, cluster: Cluster) -> None:
    redis = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-redis", "namespace": NAMESPACE},
        "stringData": {"url": "redis://127.0.0.1:1/0"},
    }
    with run_operator(cluster):
        cluster.apply(redis)
        # SQLite first (its volume claim), then Redis with two replicas (a disruption
        # budget), then one (the budget deleted).
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        wait_until(
            lambda: cluster.get("persistentvolumeclaims", NAMESPACE, "shop-relay-data") is not None,
            what="the SQLite relay's volume claim",
        )
        cluster.apply(secrets_and_channel(sandbox, relay=relay_spec(2))[2])
        wait_until(
            lambda: cluster.get("poddisruptionbudgets", NAMESPACE, "shop-relay") is not None,
            what="a disruption budget for two replicas",
        )
        cluster.apply(secrets_and_channel(sandbox, relay=relay_spec(1))[2])
        wait_until(
            lambda: cluster.get("poddisruptionbudgets", NAMESPACE, "shop-relay") is None,
            what="the disruption budget gone at one replica",
        )
        assert cluster.kubectl("delete", "instagramchannel", "shop", "--wait=false").returncode == 0
        wait_until(
            lambda: cluster.get("instagramchannels", NAMESPACE, "shop") is None,
            what="the channel finalized",
        )
    used = {(u.group, u.resource, u.verb) for u in cluster.emulator.uses if u.agent in CLIENTS}

    (role,) = by_kind(render({}, namespace=NAMESPACE), "Role")
    granted = {
        (group, resource, verb)
        for (group, resource), verbs in rules(role).items()
        for verb in verbs
    }
    assert used - granted == set(), "the operator would be refused these"
    assert granted - used - set(KEPT) == set(), "granted but never used"
