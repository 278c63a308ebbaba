"""From ``kubectl apply`` to a customer's phone, on this machine.

The example manifests go to the cluster emulator; the operator provisions the Genesys
integration in the simulator and declares the relay Deployment; the test then does the
kubelet's job: it starts the relay with exactly that Deployment's command, environment and
mounted Secret files (paths moved under a temporary root, the host bound to loopback). A
signed Instagram DM with an emoji and an image reaches the Genesys simulator, an agent's
reply reaches the Meta simulator, and ``kubectl get instagramchannels`` shows the channel
Ready with the relay's counters.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import yaml

from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.harness.process import RelayProcess
from tests.operator_harness import condition, run_operator, wait_until

EXAMPLES = Path(__file__).parents[1] / "examples"
NS = "shop"


def user_manifests(sb: Sandbox) -> list[dict[str, Any]]:
    """The examples as a user would fill them in, pointed at the simulators."""
    docs = list(yaml.safe_load_all((EXAMPLES / "secrets.yaml").read_text()))
    docs += list(yaml.safe_load_all((EXAMPLES / "channel.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "shop-meta":
            doc["stringData"] = {
                "app-secret": sb.meta.app_secret,
                "access-token": sb.meta.access_token,
            }
        elif doc["kind"] == "Secret":
            doc["stringData"] = {
                "client-id": sb.genesys.client_id,
                "client-secret": sb.genesys.client_secret,
            }
        else:
            spec = doc["spec"]
            spec["instagram"]["accountId"] = sb.meta.account_id
            spec["instagram"]["graphUrl"] = sb.graph.url
            del spec["genesys"]["region"]
            spec["genesys"]["apiUrl"] = spec["genesys"]["loginUrl"] = sb.genesys_server.url
    return docs


def kubelet_env(
    cluster: Cluster, deployment: dict[str, Any], root: Path
) -> tuple[list[str], dict[str, str]]:
    """The container's command and environment, with its Secret volumes written as files."""
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    moved: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        moved[mount["mountPath"]] = str(target)
        secret_ref = volumes[mount["name"]].get("secret")
        if secret_ref:
            secret = cluster.get("secrets", NS, secret_ref["secretName"])
            assert secret is not None, secret_ref
            for key, value in secret["data"].items():
                (target / key).write_bytes(base64.b64decode(value))
    field_values = {
        "metadata.namespace": NS,
        "metadata.name": "shop-relay-7d9f-abcde",
        "metadata.labels['igbridge.dev/channel']": pod["metadata"]["labels"][
            "igbridge.dev/channel"
        ],
    }
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = field_values[item["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        value = item["value"]
        # Paths inside a mount move with it; sqlite:////data/… holds a path after a prefix.
        for mount_path in sorted(moved, key=len, reverse=True):
            head, sep, rest = value.partition(mount_path + "/")
            if sep and (head == "" or head.endswith("/")):
                value = f"{head}{moved[mount_path]}/{rest}"
                break
        env[item["name"]] = value
    return container["command"], env


def test_kubectl_apply_to_a_customers_phone(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.meta.add_media("9001", "image/jpeg")
    with run_cluster(tmp_path) as cluster, run_operator(cluster, namespace=NS):
        for manifest in user_manifests(sandbox):
            cluster.apply(manifest)
        wait_until(
            lambda: (
                condition(cluster.get("instagramchannels", NS, "shop"), "Synced").get("status")
                == "True"
            ),
            what="Synced",
        )
        deployment = cluster.get("deployments", NS, "shop-relay")
        assert deployment is not None
        command, env = kubelet_env(cluster, deployment, tmp_path / "pod")
        port = free_port()
        assert command[:2] == ["igbridge-relay", "serve"]
        assert command[command.index("--port") + 1] == "8080"
        # The kubelet's part: run that command (on loopback) in the pod's environment.
        env |= {
            "KUBECONFIG": str(cluster.kubeconfig),
            "IGBRIDGE_STATUS_INTERVAL": "0.5",
            "PATH": os.environ.get("PATH", ""),
        }
        relay = RelayProcess(env, tmp_path / "relay.log", port=port)
        relay.start()
        try:
            customer = "6915500000000042"
            image = f"{sandbox.cdn.url}/ig_messaging_cdn/x?asset_id=9001&signature=s"
            dm = sandbox.meta.webhook(
                [
                    sandbox.meta.messaging(customer, {"text": "Meu pedido chegou quebrado 😢📦"}),
                    sandbox.meta.messaging(
                        customer, {"attachments": [{"type": "image", "payload": {"url": image}}]}
                    ),
                ]
            )
            assert (
                sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", dm).status_code
                == 200
            )
            got = sandbox.genesys.wait_for_messages(2, timeout=30)
            assert got[0].text == "Meu pedido chegou quebrado 😢📦"
            assert got[0].attributes["Source"] == "Instagram_DM"
            assert got[1].body["content"][0]["attachment"]["mediaType"] == "Image"
            assert got[1].body["content"][0]["attachment"]["url"] == image

            generated = cluster.get("secrets", NS, "shop-igbridge")
            assert generated is not None
            signing = base64.b64decode(generated["data"]["genesys-webhook-secret"]).decode()
            integration_id = cluster.get("instagramchannels", NS, "shop")["status"]["integrationId"]  # type: ignore[index]
            reply = sandbox.genesys.build_agent_message(
                customer,
                "Sentimos muito! Vamos enviar outro hoje 🙏",
                integration_id=integration_id,
            )
            posted = sandbox.genesys.post_agent_message(
                f"{relay.url}/webhooks/genesys", reply, signing
            )
            assert posted.status_code == 200
            wait_until(
                lambda: any(
                    s.get("recipient", {}).get("id") == customer for s in sandbox.meta.sent
                ),
                what="reply at the Meta simulator",
            )
            sent = [s for s in sandbox.meta.sent if s["recipient"].get("id") == customer]
            assert sent[0]["message"]["text"] == "Sentimos muito! Vamos enviar outro hoje 🙏"

            columns = (
                'NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,'
                "IN:.status.relay.messagesIn,OUT:.status.relay.messagesOut"
            )

            def shown() -> list[str]:
                out = cluster.kubectl(
                    "get", "instagramchannels", "-n", NS, "-o", f"custom-columns={columns}"
                )
                return out.stdout.splitlines()[-1].split() if out.returncode == 0 else []

            wait_until(lambda: shown() == ["shop", "True", "2", "1"], what="Ready with counters")
        finally:
            relay.stop()
    assert json.dumps(env).find(sandbox.meta.app_secret) == -1  # secrets only in files
