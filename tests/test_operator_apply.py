"""Owned objects go to the cluster by server-side apply: the emulator, which refuses
what a real apiserver refuses, shows a relay switching store keeps a valid Deployment,
records the operator as the fields' manager, and drops fields the operator stops setting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from igbridge.operator import builders
from igbridge.operator.kube import FIELD_MANAGER, Kube
from igbridge.operator.spec import parse_spec
from tests.cluster import Cluster, run_cluster
from tests.test_operator_plan import SPEC

T = TypeVar("T")
REDIS = {"replicas": 2, "store": {"redisSecretRef": {"name": "shop-redis"}}}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def with_kube(cluster: Cluster, work: Callable[[Kube], Awaitable[T]]) -> T:
    async def run() -> T:
        async with ApiClient(Configuration(host=cluster.url)) as api:
            return await work(Kube(api))

    return asyncio.run(run())


def deployment(relay: dict[str, Any], pods: builders.PodOptions | None = None) -> dict[str, Any]:
    spec = parse_spec({**SPEC, "relay": relay})
    return builders.build_deployment(
        "shop", "default", "uid-1", spec, integration_id="i", image="img:1", checksum="c", pods=pods
    )


def test_switching_a_relay_from_redis_to_sqlite_keeps_a_valid_deployment(
    cluster: Cluster,
) -> None:
    async def work(kube: Kube) -> list[str]:
        return [
            await kube.apply_reporting(deployment(REDIS)),
            await kube.apply_reporting(deployment(REDIS)),
            await kube.apply_reporting(deployment({})),
        ]

    assert with_kube(cluster, work) == ["created", "unchanged", "updated"]
    stored = cluster.get("deployments", "default", "shop-relay") or {}
    assert stored["spec"]["strategy"] == {"type": "Recreate"}
    assert stored["spec"]["replicas"] == 1
    (entry,) = stored["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == (FIELD_MANAGER, "Apply")
    assert "f:strategy" in entry["fieldsV1"]["f:spec"]


def test_a_merge_patch_would_have_been_refused(cluster: Cluster) -> None:
    """Why apply: the old merge patch left the defaulted rollingUpdate behind."""

    async def work(kube: Kube) -> tuple[int, str]:
        manifest = deployment({})
        manifest["spec"]["strategy"] = {"type": "RollingUpdate"}  # as the operator once sent
        await kube.apply(manifest)
        try:
            await kube.patch(
                "apps/v1",
                "Deployment",
                "default",
                "shop-relay",
                {"spec": {"strategy": {"type": "Recreate"}}},
            )
        except ApiException as exc:
            return int(exc.status), str(exc.body)
        return 200, ""

    status, body = with_kube(cluster, work)
    assert status == 422
    assert "spec.strategy.rollingUpdate: Forbidden" in body
    stored = cluster.get("deployments", "default", "shop-relay") or {}
    assert stored["spec"]["strategy"]["type"] == "RollingUpdate"


def test_a_scheduling_field_taken_out_of_the_values_leaves_the_pods(cluster: Cluster) -> None:
    tolerant = builders.PodOptions.model_validate(
        {
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "nodeSelector": {"pool": "relays"},
        }
    )
    plain = builders.PodOptions.model_validate({"nodeSelector": {"pool": "relays"}})

    async def work(kube: Kube) -> list[str]:
        return [
            await kube.apply_reporting(deployment({}, tolerant)),
            await kube.apply_reporting(deployment({}, plain)),
            await kube.apply_reporting(deployment({}, plain)),
        ]

    assert with_kube(cluster, work) == ["created", "updated", "unchanged"]
    pod = (cluster.get("deployments", "default", "shop-relay") or {})["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert pod["nodeSelector"] == {"pool": "relays"}


def test_delete_says_whether_the_object_was_there(cluster: Cluster) -> None:
    budget = builders.build_disruption_budget("shop", "default", "uid-1")

    async def work(kube: Kube) -> list[bool]:
        await kube.apply(budget)
        return [
            await kube.delete("policy/v1", "PodDisruptionBudget", "default", "shop-relay"),
            await kube.delete("policy/v1", "PodDisruptionBudget", "default", "shop-relay"),
        ]

    assert with_kube(cluster, work) == [True, False]
    assert cluster.get("poddisruptionbudgets", "default", "shop-relay") is None
