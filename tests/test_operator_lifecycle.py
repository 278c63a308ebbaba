"""The operator's lifecycle through kopf and kubectl against the cluster emulator, with the
sandbox's Genesys and Meta simulators and a real relay reporting into the status."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from igbridge.sandbox.faults import Fault
from igbridge.sandbox.server import ThreadedServer
from igbridge.sandbox.stack import Sandbox, run_relay
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import (
    NAMESPACE,
    condition,
    run_operator,
    secrets_and_channel,
    status_of,
    wait_until,
)

INTEGRATIONS = "/api/v2/conversations/messaging/integrations/open"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def channel(cluster: Cluster, name: str = "shop") -> dict[str, Any]:
    found = cluster.get("instagramchannels", NAMESPACE, name)
    assert found is not None
    return found


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def create_synced(sandbox: Sandbox, cluster: Cluster, **spec: Any) -> None:
    """Apply the user's Secrets and channel; return once the operator has synced it."""
    for manifest in secrets_and_channel(sandbox, **spec):
        cluster.apply(manifest)
    wait_until(lambda: status_of(cluster, "Synced") == "True", what="Synced")


@contextmanager
def relay_for(sandbox: Sandbox, tmp_path: Path, name: str = "shop") -> Iterator[ThreadedServer]:
    """A relay configured as the Deployment would be, reporting into the channel's status."""
    env = sandbox.relay_env(
        tmp_path / f"{name}.db",
        IGBRIDGE_CHANNEL_NAME=name,
        IGBRIDGE_CHANNEL_NAMESPACE=NAMESPACE,
        IGBRIDGE_POD_NAME=f"{name}-relay-0",
        IGBRIDGE_STATUS_INTERVAL="0.3",
    )
    with run_relay(env) as relay:
        yield relay


def test_create_to_ready_with_every_owned_object(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path
) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        assert status_of(cluster, "Ready") == "False"  # no relay has reported yet
        assert condition(channel(cluster), "Ready")["reason"] == "WaitingForRelay"
        with relay_for(sandbox, tmp_path):
            wait_until(lambda: status_of(cluster, "Ready") == "True", what="Ready")
            listed = cluster.kubectl("get", "igch", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["items"]
    status = item["status"]
    assert status["observedGeneration"] == item["metadata"]["generation"]
    assert status["webhookUrls"] == {
        "instagram": "https://shop.example.com/ig/webhooks/instagram",
        "genesys": "https://shop.example.com/ig/webhooks/genesys",
        "dataDeletion": "https://shop.example.com/ig/webhooks/instagram/data-deletion",
    }
    assert status["retention"]["deadLetterPayloadSeconds"] == 7 * 86400
    assert status["relay"]["pod"] == "shop-relay-0"
    assert status["relay"]["ready"] is True
    assert status["relay"]["queueDepth"] == 0
    assert status["relay"]["guard"] == {
        "spamDropped": 0,
        "spamFlagged": 0,
        "loopsDetected": 0,
        "botRepliesHeld": 0,
        "slaEscalations": 0,
    }
    # Genesys: the integration points at the relay and is signed with the generated secret.
    integration = sandbox.genesys.integrations[status["integrationId"]]
    assert integration["outboundNotificationWebhookUrl"] == status["webhookUrls"]["genesys"]
    assert integration["name"] == "igbridge-default-shop"
    generated = cluster.get("secrets", NAMESPACE, "shop-igbridge")
    assert generated is not None
    signing = base64.b64decode(generated["data"]["genesys-webhook-secret"]).decode()
    assert integration["outboundNotificationWebhookSignatureSecretToken"] == signing
    assert len(base64.b64decode(generated["data"]["verify-token"])) >= 24
    # Meta: the account's Page is subscribed to the webhooks (Facebook Login).
    assert sandbox.meta.page_subscriptions == ["feed"]
    assert status_of(cluster, "WebhookSubscribed") == "True"
    # The relay's workload, owned by the channel.
    uid = item["metadata"]["uid"]
    for plural, name in [
        ("deployments", "shop-relay"),
        ("services", "shop-relay"),
        ("serviceaccounts", "shop-relay"),
        ("roles", "shop-relay"),
        ("rolebindings", "shop-relay"),
        ("persistentvolumeclaims", "shop-relay-data"),
        ("secrets", "shop-igbridge"),
    ]:
        obj = cluster.get(plural, NAMESPACE, name)
        assert obj is not None, plural
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    deployment = cluster.get("deployments", NAMESPACE, "shop-relay")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(deployment)
    assert env["IGBRIDGE_GENESYS_INTEGRATION_ID"] == status["integrationId"]
    assert env["IGBRIDGE_META_APP_SECRET_FILE"] == "/var/run/igbridge/meta/app-secret"
    assert not any(sandbox.meta.app_secret in v for v in env.values())  # no secret values
    role = cluster.get("roles", NAMESPACE, "shop-relay")
    assert role is not None
    assert role["rules"][0]["resources"] == ["instagramchannels/status"]
    assert role["rules"][0]["resourceNames"] == ["shop"]


def test_spec_change_updates_the_integration_and_the_deployment(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        integration_id = channel(cluster)["status"]["integrationId"]
        patched = cluster.kubectl(
            "patch",
            "instagramchannels.igbridge.dev",
            "shop",
            "--type",
            "merge",
            "-p",
            json.dumps(
                {"spec": {"publicUrl": "https://new.example.com", "window": {"priority": 900}}}
            ),
        )
        assert patched.returncode == 0, patched.stderr
        wait_until(
            lambda: (
                sandbox.genesys.integrations[integration_id]["outboundNotificationWebhookUrl"]
                == "https://new.example.com/webhooks/genesys"
            ),
            what="integration updated",
        )
        wait_until(
            lambda: (
                env_of(cluster.get("deployments", NAMESPACE, "shop-relay") or {})[
                    "IGBRIDGE_WINDOW_PRIORITY"
                ]
                == "900"
            ),
            what="deployment updated",
        )
        wait_until(
            lambda: channel(cluster)["status"]["observedGeneration"] == 2, what="generation 2"
        )
    assert list(sandbox.genesys.integrations) == [integration_id]  # updated, not recreated


def test_secret_rotation_rolls_the_relay(sandbox: Sandbox, cluster: Cluster) -> None:
    def checksum() -> str:
        deployment = cluster.get("deployments", NAMESPACE, "shop-relay") or {}
        template = deployment.get("spec", {}).get("template", {})
        return str(
            template.get("metadata", {}).get("annotations", {}).get("igbridge.dev/config-checksum")
        )

    with run_operator(cluster):
        create_synced(sandbox, cluster)
        before = checksum()
        rotated = cluster.kubectl(
            "patch",
            "secret",
            "shop-meta",
            "--type",
            "merge",
            "-p",
            json.dumps({"stringData": {"app-secret": "rotated-app-secret"}}),
        )
        assert rotated.returncode == 0, rotated.stderr
        wait_until(lambda: checksum() != before, what="new pod-template checksum")


def test_genesys_outage_then_recovery(sandbox: Sandbox, cluster: Cluster) -> None:
    sandbox.genesys.faults.add(Fault(status=503, count=10_000, path_prefix=INTEGRATIONS))
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        wait_until(lambda: status_of(cluster, "Synced") == "False", what="Synced=False")
        synced = condition(channel(cluster), "Synced")
        assert synced["reason"] == "GenesysUnavailable"
        assert "503" in synced["message"]
        calls = sandbox.genesys.faults.injected
        sandbox.genesys.faults.clear()
        wait_until(lambda: status_of(cluster, "Synced") == "True", what="recovery")
    assert calls < 50  # retried with backoff, not in a hot loop
    assert len(sandbox.genesys.integrations) == 1


def test_missing_secret_names_it_then_recovers(sandbox: Sandbox, cluster: Cluster) -> None:
    meta_secret, genesys_secret, ig_channel = secrets_and_channel(sandbox)
    with run_operator(cluster):
        cluster.apply(meta_secret)
        cluster.apply(ig_channel)
        wait_until(
            lambda: status_of(cluster, "CredentialsReady") == "False", what="CredentialsReady=False"
        )
        message = condition(channel(cluster), "CredentialsReady")["message"]
        assert "Secret default/shop-genesys not found" in message
        cluster.apply(genesys_secret)
        wait_until(lambda: status_of(cluster, "Synced") == "True", what="recovered")
        assert status_of(cluster, "CredentialsReady") == "True"


def test_existing_integration_is_adopted_not_duplicated(sandbox: Sandbox, cluster: Cluster) -> None:
    with run_operator(cluster):
        manifests = secrets_and_channel(sandbox)
        # Someone (or an earlier operator) already created it under the deterministic name.
        for manifest in manifests[:2]:
            cluster.apply(manifest)
        token = httpx.post(
            f"{sandbox.genesys_server.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(sandbox.genesys.client_id, sandbox.genesys.client_secret),
        ).json()["access_token"]
        existing = httpx.post(
            f"{sandbox.genesys_server.url}{INTEGRATIONS}",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "name": "igbridge-default-shop",
                "outboundNotificationWebhookUrl": "https://old.example.com/webhooks/genesys",
                "outboundNotificationWebhookSignatureSecretToken": "an-old-secret-of-some-length",
            },
        ).json()["id"]
        cluster.apply(manifests[2])
        wait_until(lambda: status_of(cluster, "Synced") == "True", what="Synced")
    assert channel(cluster)["status"]["integrationId"] == existing
    assert list(sandbox.genesys.integrations) == [existing]
    assert sandbox.genesys.integrations[existing]["outboundNotificationWebhookUrl"] == (
        "https://shop.example.com/ig/webhooks/genesys"
    )


def test_existing_integration_on_a_later_page_is_found(sandbox: Sandbox, cluster: Cluster) -> None:
    """Genesys pages its listing: the channel's integration, created after many others, is
    on a later page and must still be adopted (not duplicated)."""
    token = httpx.post(
        f"{sandbox.genesys_server.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sandbox.genesys.client_id, sandbox.genesys.client_secret),
    ).json()["access_token"]

    def create(name: str) -> str:
        return str(
            httpx.post(
                f"{sandbox.genesys_server.url}{INTEGRATIONS}",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "name": name,
                    "outboundNotificationWebhookUrl": "https://old.example.com/webhooks/genesys",
                    "outboundNotificationWebhookSignatureSecretToken": "a-secret-of-some-length",
                },
            ).json()["id"]
        )

    others = [create(f"someone-else-{i}") for i in range(2 * sandbox.genesys.registry.page_size)]
    existing = create("igbridge-default-shop")
    first_page = httpx.get(
        f"{sandbox.genesys_server.url}{INTEGRATIONS}",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert first_page["pageCount"] >= 3
    assert existing not in [e["id"] for e in first_page["entities"]]
    with run_operator(cluster):
        create_synced(sandbox, cluster)
    assert channel(cluster)["status"]["integrationId"] == existing
    assert sorted(sandbox.genesys.integrations) == sorted([*others, existing])
    assert sandbox.genesys.integrations[existing]["outboundNotificationWebhookUrl"] == (
        "https://shop.example.com/ig/webhooks/genesys"
    )
    assert sandbox.genesys.integrations[existing]["name"] == "igbridge-default-shop"


@pytest.mark.parametrize("policy", ["Delete", "Orphan"])
def test_delete_with_each_policy(sandbox: Sandbox, cluster: Cluster, policy: str) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster, deletionPolicy=policy)
        integration_id = channel(cluster)["status"]["integrationId"]
        deleted = cluster.kubectl(
            "delete", "instagramchannels.igbridge.dev", "shop", "--wait=false"
        )
        assert deleted.returncode == 0, deleted.stderr
        wait_until(
            lambda: cluster.get("instagramchannels", NAMESPACE, "shop") is None, what="deleted"
        )
    assert (integration_id in sandbox.genesys.integrations) is (policy == "Orphan")
    assert cluster.get("deployments", NAMESPACE, "shop-relay") is None  # garbage-collected
    assert cluster.get("secrets", NAMESPACE, "shop-igbridge") is None


def test_a_relay_that_stops_reporting_turns_unavailable(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path
) -> None:
    with run_operator(cluster, IGBRIDGE_RELAY_GRACE_SECONDS="2"):
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        with relay_for(sandbox, tmp_path):
            wait_until(lambda: status_of(cluster, "RelayAvailable") == "True", what="available")
        wait_until(lambda: status_of(cluster, "RelayAvailable") == "False", what="stale")
        relay = condition(channel(cluster), "RelayAvailable")
        assert relay["reason"] == "RelayNotReporting"
        assert status_of(cluster, "Ready") == "False"


def test_drift_flow_and_dropped_subscription_are_repaired(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    with run_operator(cluster):
        create_synced(sandbox, cluster)
        integration_id = channel(cluster)["status"]["integrationId"]
        # Someone edits the integration in the Genesys admin UI; Meta drops the subscription.
        sandbox.genesys.integrations[integration_id]["outboundNotificationWebhookUrl"] = (
            "https://wrong.example.com/hook"
        )
        sandbox.meta.drop_subscription()
        wait_until(
            lambda: (
                sandbox.genesys.integrations[integration_id]["outboundNotificationWebhookUrl"]
                == "https://shop.example.com/ig/webhooks/genesys"
            ),
            what="drift repaired",
        )
        wait_until(lambda: sandbox.meta.page_subscriptions == ["feed"], what="re-subscribed")
        cluster.kubectl(
            "patch",
            "instagramchannels.igbridge.dev",
            "shop",
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"genesys": {"inboundFlowId": "flow-123"}}}),
        )
        recipient = sandbox.genesys.integrations[integration_id]["recipient"]["id"]
        wait_until(
            lambda: sandbox.genesys.flow_assignments.get(recipient) == "flow-123",
            what="flow attached",
        )


def test_printer_columns_show_the_truth(sandbox: Sandbox, cluster: Cluster, tmp_path: Path) -> None:
    """Renders the CRD's own printer columns with kubectl (custom-columns are evaluated the
    same way; the emulator cannot serve the apiserver's Table format)."""
    crd_path = (
        Path(__file__).parents[1] / "charts/igbridge/crds/instagramchannels.igbridge.dev.yaml"
    )
    crd = yaml.safe_load(crd_path.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    for wanted in ("Ready", "Synced", "Integration", "Webhook URL", "Age"):
        assert wanted in names
    spec = ",".join(f"{c['name'].upper().replace(' ', '_')}:{{{c['jsonPath']}}}" for c in columns)
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        with relay_for(sandbox, tmp_path):
            wait_until(lambda: status_of(cluster, "Ready") == "True", what="Ready")
            shown = cluster.kubectl("get", "instagramchannels", "-o", f"custom-columns={spec}")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == [
        "READY",
        "REASON",
        "SYNCED",
        "INTEGRATION",
        "WEBHOOK_URL",
        "QUEUE",
        "TOKEN_EXPIRES",
        "AGE",
    ]
    ready, reason, synced, integration, url, queue, expires, _age = row.split()
    # The sandbox's Page token: without an app id Meta's debug_token is not asked.
    assert (ready, reason, synced, queue, expires) == (
        "True",
        "ChannelReady",
        "True",
        "0",
        "<none>",
    )
    assert integration == channel(cluster)["status"]["integrationId"]
    assert url == "https://shop.example.com/ig/webhooks/instagram"


def test_optional_ingress_per_channel(sandbox: Sandbox, cluster: Cluster) -> None:
    with run_operator(
        cluster,
        IGBRIDGE_CHANNEL_INGRESS_CLASS="nginx",
        IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS='{"cert-manager.io/cluster-issuer": "le"}',
        IGBRIDGE_CHANNEL_INGRESS_TLS_SECRET="{name}-tls",
    ):
        create_synced(sandbox, cluster)
    ingress = cluster.get("ingresses", NAMESPACE, "shop-relay")
    assert ingress is not None
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "shop.example.com"
    assert rule["http"]["paths"][0]["path"] == "/ig/webhooks"
    assert ingress["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "le"
    env = env_of(cluster.get("deployments", NAMESPACE, "shop-relay") or {})
    assert env["IGBRIDGE_BASE_PATH"] == "/ig"


def test_adoption_by_annotation_and_no_leak_after_a_lost_create_response(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    """An integration named by the annotation is adopted (and keeps its name); and one that
    a create made without its id ever being saved (a lost response: what the pending
    record guards against) is found by its deterministic name, not created twice."""
    token = httpx.post(
        f"{sandbox.genesys_server.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(sandbox.genesys.client_id, sandbox.genesys.client_secret),
    ).json()["access_token"]

    def create(name: str) -> str:
        created = httpx.post(
            f"{sandbox.genesys_server.url}{INTEGRATIONS}",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "name": name,
                "outboundNotificationWebhookUrl": "https://x.example.com/h",
                "outboundNotificationWebhookSignatureSecretToken": "sixteen-plus-chars-secret",
            },
        )
        return str(created.json()["id"])

    chosen = create("hand-made-integration")
    manifests = secrets_and_channel(sandbox)
    manifests[2]["metadata"]["annotations"] = {"igbridge.dev/integration-id": chosen}
    with run_operator(cluster):
        for manifest in manifests:
            cluster.apply(manifest)
        wait_until(lambda: status_of(cluster, "Synced") == "True", what="Synced")
    assert channel(cluster)["status"]["integrationId"] == chosen
    assert list(sandbox.genesys.integrations) == [chosen]  # adopted, nothing new created
    adopted = sandbox.genesys.integrations[chosen]
    assert adopted["name"] == "hand-made-integration"  # its name is the owner's choice
    assert (
        adopted["outboundNotificationWebhookUrl"] == "https://shop.example.com/ig/webhooks/genesys"
    )

    # A second channel whose earlier create reached Genesys but whose response was lost
    # (simulated by creating it under the deterministic name before the channel exists).
    lost = create("igbridge-default-other")
    other = secrets_and_channel(sandbox, name="other")
    with run_operator(cluster):
        for manifest in other:
            cluster.apply(manifest)
        wait_until(lambda: status_of(cluster, "Synced", "other") == "True", what="Synced")
    assert channel(cluster, "other")["status"]["integrationId"] == lost
    assert len(sandbox.genesys.integrations) == 2


def test_a_guard_the_relay_would_refuse_is_named_and_never_reaches_it(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path
) -> None:
    def synced() -> dict[str, Any]:
        return condition(channel(cluster), "Synced")

    def set_guard(guard: dict[str, Any]) -> None:
        current = channel(cluster)["spec"].get("guard") or {}
        patch = {"spec": {"guard": {**dict.fromkeys(current), **guard}}}  # null removes a key
        done = cluster.kubectl("patch", "igch", "shop", "--type", "merge", "-p", json.dumps(patch))
        assert done.returncode == 0, done.stderr

    typo = "spec.guard.maxRepeat: Extra inputs are not permitted"
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox, guard={"maxRepeat": 3}):
            cluster.apply(manifest)
        wait_until(lambda: synced().get("reason") == "InvalidSpec", what="InvalidSpec")
        assert (synced()["status"], synced()["message"]) == ("False", typo)
        assert status_of(cluster, "Ready") == "False"
        assert cluster.get("deployments", NAMESPACE, "shop-relay") is None

        set_guard({"maxRepeats": 3})
        with relay_for(sandbox, tmp_path):
            wait_until(lambda: status_of(cluster, "Ready") == "True", what="Ready once fixed")
        deployment = cluster.get("deployments", NAMESPACE, "shop-relay")
        assert deployment is not None
        assert env_of(deployment)["IGBRIDGE_GUARD"] == '{"maxRepeats": 3}'

        # The same typo on a running channel: named, and the relay keeps its valid rules.
        set_guard({"maxRepeat": 3})
        wait_until(lambda: synced().get("reason") == "InvalidSpec", what="InvalidSpec again")
        assert synced()["message"] == typo
        before = cluster.get("deployments", NAMESPACE, "shop-relay") or {}
        time.sleep(2.5)  # more than two resyncs
        after = cluster.get("deployments", NAMESPACE, "shop-relay") or {}
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert env_of(after)["IGBRIDGE_GUARD"] == '{"maxRepeats": 3}'


def test_a_rejection_is_named_by_what_failed_not_by_its_wording(
    sandbox: Sandbox, cluster: Cluster
) -> None:
    """Genesys refuses the integration with a message that mentions a secret token: the
    credentials are fine, the integration is what was rejected."""
    rejection = "outboundNotificationWebhookSignatureSecretToken is not acceptable"
    sandbox.genesys.faults.add(
        Fault(
            status=400,
            count=10_000,
            path_prefix=INTEGRATIONS,
            method="POST",
            body={"message": rejection, "status": 400, "code": "bad.request"},
        )
    )
    with run_operator(cluster):
        for manifest in secrets_and_channel(sandbox):
            cluster.apply(manifest)
        wait_until(
            lambda: condition(channel(cluster), "Synced").get("reason") == "InvalidSpec",
            what="InvalidSpec",
        )
        synced = condition(channel(cluster), "Synced")
        assert synced["message"] == f"Genesys rejected the integration: HTTP 400: {rejection}"
        assert condition(channel(cluster), "IntegrationReady")["reason"] == "GenesysRejected"
        assert status_of(cluster, "CredentialsReady") == "True"
        sandbox.genesys.faults.clear()
        wait_until(lambda: status_of(cluster, "Synced") == "True", what="recovered")
