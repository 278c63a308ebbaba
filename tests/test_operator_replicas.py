"""Several relay replicas under the operator: only with a Redis store, and a status that
stays truthful with many pods reporting (sums, readiness, pods that went away)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from igbridge.relay.channel_status import merge_pod_report
from igbridge.relay.config import load_settings
from igbridge.relay.health import RelayHealth
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.store import SQLiteStore
from igbridge.relay.tasks.status_report import StatusReporter
from igbridge.sandbox.server import ThreadedServer
from igbridge.sandbox.stack import Sandbox, run_relay
from tests.cluster import Cluster, run_cluster
from tests.harness.redis_server import RedisServer
from tests.operator_harness import (
    NAMESPACE,
    condition,
    run_operator,
    secrets_and_channel,
    status_of,
    wait_until,
)
from tests.test_config import BASE_ENV


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def relay_status(cluster: Cluster) -> dict[str, Any]:
    obj = cluster.get("instagramchannels", NAMESPACE, "shop") or {}
    return dict((obj.get("status") or {}).get("relay") or {})


def test_more_than_one_replica_without_redis_is_refused_with_the_reason(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    # The CRD's CEL rule stops this at the apiserver; the operator holds the line too.
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox, relay={"replicas": 3}):
            cluster.apply(manifest)
        wait_until(
            lambda: (
                condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "Synced").get(
                    "reason"
                )
                == "InvalidSpec"
            ),
            what="InvalidSpec",
        )
        synced = condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "Synced")
        assert "replicas > 1 needs store.redisSecretRef" in synced["message"]
        assert cluster.get("deployments", NAMESPACE, "shop-relay") is None


def test_replicas_on_redis_report_one_truthful_status(
    sandbox: Sandbox, cluster: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-redis", "namespace": NAMESPACE},
        "stringData": {"url": redis_server.url},
    }
    spec: dict[str, Any] = {
        "relay": {"replicas": 3, "store": {"redisSecretRef": {"name": "shop-redis"}}}
    }
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox, **spec):
            cluster.apply(manifest)
        # The Redis Secret is missing: named in the condition, no relay that cannot start.
        wait_until(lambda: "shop-redis" in str(credentials(cluster).get("message")), what="named")
        assert credentials(cluster)["status"] == "False"
        assert cluster.get("deployments", NAMESPACE, "shop-relay") is None
        cluster.apply(redis_secret)
        wait_until(lambda: cluster.get("deployments", NAMESPACE, "shop-relay") is not None)
        deployment = cluster.get("deployments", NAMESPACE, "shop-relay") or {}
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["IGBRIDGE_STORE_URL_FILE"].endswith("/store/url")
        assert "IGBRIDGE_STORE_URL" not in env  # the URL (and its password) stays in the Secret
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert "shop-redis" in secrets
        assert cluster.get("persistentvolumeclaims", NAMESPACE, "shop-relay-data") is None
        # A new Redis password rolls the relay (it reads the URL file at start).
        before = pod_checksum(cluster)
        cluster.apply({**redis_secret, "stringData": {"url": redis_server.url + "?rotated=1"}})
        wait_until(lambda: pod_checksum(cluster) != before, what="rolled")

        with ExitStack() as stack_a, ExitStack() as stack_b:
            relays: list[ThreadedServer] = []
            for name, stack in (("shop-relay-a", stack_a), ("shop-relay-b", stack_b)):
                env_ = sandbox.relay_env(
                    tmp_path / "unused.db",
                    IGBRIDGE_STORE_URL=redis_server.url,
                    IGBRIDGE_CHANNEL_NAME="shop",
                    IGBRIDGE_CHANNEL_NAMESPACE=NAMESPACE,
                    IGBRIDGE_POD_NAME=name,
                    IGBRIDGE_STATUS_INTERVAL="0.3",
                )
                relays.append(stack.enter_context(run_relay(env_)))
            for n in range(5):  # three through one pod, two through the other
                body = sandbox.meta.webhook(
                    [sandbox.meta.messaging(f"880{n}", {"text": f"hello {n} 👋"})]
                )
                url = f"{relays[n % 2].url}/webhooks/instagram"
                assert sandbox.meta.deliver_webhook(url, body).status_code == 200
            sandbox.genesys.wait_for_messages(5)
            wait_until(
                lambda: (
                    relay_status(cluster).get("messagesIn") == 5
                    and relay_status(cluster).get("replicas") == 2
                ),
                what="both pods counted",
            )
            status = relay_status(cluster)
            assert set(status["pods"]) == {"shop-relay-a", "shop-relay-b"}
            assert sum(p["messagesIn"] for p in status["pods"].values()) == 5
            assert status["ready"] is True
            wait_until(lambda: status_of(cluster, "Ready") == "True", what="Ready")
            # One pod goes away (a scale-down): its entry is dropped, the channel stays Ready.
            stack_b.close()
            wait_until(lambda: relay_status(cluster).get("replicas") == 1, what="one pod left")
            status = relay_status(cluster)
            assert set(status["pods"]) == {"shop-relay-a"}
            assert status["messagesIn"] == 5  # the channel's total keeps the gone pod's share
            assert status_of(cluster, "Ready") == "True"


def credentials(cluster: Cluster) -> dict[str, Any]:
    return condition(cluster.get("instagramchannels", NAMESPACE, "shop"), "CredentialsReady")


def pod_checksum(cluster: Cluster) -> str | None:
    deployment = cluster.get("deployments", NAMESPACE, "shop-relay") or {}
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return next((v for k, v in annotations.items() if "checksum" in k), None)


def test_merge_drops_gone_pods_sums_counters_and_names_an_unready_pod() -> None:
    def report(beat: str, ready: bool, n: int, error: str | None = None) -> dict[str, Any]:
        return {
            "lastHeartbeat": beat,
            "ready": ready,
            "lastError": error,
            "messagesIn": n,
            "messagesOut": n * 2,
            "guard": {"spamDropped": n},
            "queueDepth": 7,
        }

    current = {
        "pods": {
            "a": report("2026-11-25T10:00:00Z", True, 3),
            "b": report("2026-11-25T10:00:09Z", False, 4, "genesys auth failed"),
            "gone": report("2026-11-25T09:00:00Z", True, 100),
            "junk": "not an object",
        }
    }
    merged = merge_pod_report("c", report("2026-11-25T10:00:10Z", True, 5), current, stale_after=60)
    assert merged["pods"]["gone"] is None
    assert merged["pods"]["junk"] is None
    assert merged["pods"]["c"]["messagesIn"] == 5
    assert "a" not in merged["pods"]  # other pods' entries are theirs to write
    assert (merged["messagesIn"], merged["messagesOut"], merged["replicas"]) == (12, 24, 3)
    assert merged["guard"] == {"spamDropped": 12}
    assert merged["ready"] is False
    assert merged["lastError"] == "b: genesys auth failed"
    assert merged["queueDepth"] == 7  # the shared store's figure, as reported


def test_channel_totals_add_up_across_pods_and_survive_a_restart(tmp_path: Path) -> None:
    settings = load_settings(
        {**BASE_ENV, "IGBRIDGE_CHANNEL_NAME": "shop", "IGBRIDGE_CHANNEL_NAMESPACE": NAMESPACE}
    )

    async def main() -> list[int]:
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        try:

            def pod() -> StatusReporter:
                return StatusReporter(settings, store, RelayMetrics(), RelayHealth())

            a, b = pod(), pod()
            seen = []
            for reporter, counted in ((a, 3), (b, 2), (a, 4), (pod(), 1)):  # last: a restarted
                totals = await reporter.channel_totals({"messagesIn": counted, "messagesOut": 0})
                seen.append(totals["messagesIn"])
            return seen
        finally:
            await store.close()

    assert asyncio.run(main()) == [3, 5, 6, 7]
