"""The operator's lifecycle through kopf and kubectl against the cluster emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.relay.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import (
    NAMESPACE,
    condition,
    run_operator,
    secrets_and_channel,
    wait_until,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def test_create_reaches_synced_with_every_owned_object(sandbox: Sandbox, cluster: Cluster) -> None:
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        wait_until(
            lambda: (
                condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "Synced").get(
                    "status"
                )
                == "True"
            ),
            what="Synced=True",
        )
        channel = cluster.get("instagramchannels", NAMESPACE, "shop")
    assert channel is not None
    print(channel["status"])
    integration_id = channel["status"]["integrationId"]
    assert integration_id in sandbox.genesys.integrations
    deployment = cluster.get("deployments", NAMESPACE, "shop-relay")
    assert deployment is not None
