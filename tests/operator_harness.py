"""The operator under test: kopf running our handlers in a thread, against the cluster
emulator, with the sandbox's Genesys and Meta simulators as the outside world."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from igbridge.operator.handlers import registry
from igbridge.operator.settings import load_operator_settings
from igbridge.relay.channel_status import API_VERSION, KIND
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster

NAMESPACE = "default"


@contextmanager
def run_operator(cluster: Cluster, namespace: str = NAMESPACE, **env: str) -> Iterator[None]:
    """The operator as its command runs it, configured by this environment: the process's
    own with quick resyncs by default, and ``env`` on top."""
    environ = {
        "IGBRIDGE_OPERATOR_RESYNC_SECONDS": "1",
        "IGBRIDGE_OPERATOR_RECHECK_SECONDS": "1",
        **os.environ,
        **env,
    }
    handlers = registry(load_operator_settings(environ))
    saved = dict(os.environ)
    # The Kubernetes clients' own variable: kopf's login and the startup handler read it.
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)

    stop = threading.Event()
    ready = threading.Event()

    # kmock cannot route the cluster-scoped /api/v1/namespaces listing; with exact
    # namespace names kopf does not need it.
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True

    def main() -> None:
        asyncio.run(
            kopf.operator(
                registry=handlers,
                namespaces=[namespace],
                standalone=True,
                stop_flag=stop,
                ready_flag=ready,
                settings=settings,
            )
        )

    thread = threading.Thread(target=main, name="kopf", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("kopf did not start")
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        os.environ.clear()
        os.environ.update(saved)


def secrets_and_channel(sb: Sandbox, name: str = "shop", **spec: Any) -> list[dict[str, Any]]:
    """A user's manifests: the two credential Secrets and an InstagramChannel."""
    meta_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-meta", "namespace": NAMESPACE},
        "stringData": {"app-secret": sb.meta.app_secret, "access-token": sb.meta.access_token},
    }
    genesys_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-genesys", "namespace": NAMESPACE},
        "stringData": {
            "client-id": sb.genesys.client_id,
            "client-secret": sb.genesys.client_secret,
        },
    }
    channel_spec: dict[str, Any] = {
        "publicUrl": f"https://{name}.example.com/ig",
        "instagram": {
            "accountId": sb.meta.account_id,
            "pageId": sb.meta.page_id,  # Facebook Login (the default) subscribes the Page
            "graphUrl": sb.graph.url,
            "credentialsSecretRef": {"name": f"{name}-meta"},
        },
        "genesys": {
            "apiUrl": sb.genesys_server.url,
            "loginUrl": sb.genesys_server.url,
            "credentialsSecretRef": {"name": f"{name}-genesys"},
        },
    }
    channel_spec.update(spec)
    channel = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": channel_spec,
    }
    return [meta_secret, genesys_secret, channel]


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def status_of(cluster: Cluster, kind: str, name: str = "shop") -> str | None:
    """The status of one of a channel's conditions ("True", "False", ...), or None."""
    obj = cluster.get("instagramchannels", NAMESPACE, name)
    return condition(obj, kind).get("status")


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")
