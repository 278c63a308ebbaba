"""kopf registrations. Thin on purpose: they translate between kopf and the reconciler."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient

from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.rest import GenesysRest

from .builders import GROUP, PLURAL, VERSION, IngressOptions
from .integrations import Integrations
from .kube import Kube
from .reconcile import Channel, OperatorConfig, Reconciler, RetryLater, SpecProblem
from .spec import ChannelSpec
from .subscriptions import ensure_subscribed

FINALIZER = "igbridge.dev/finalizer"
log = logging.getLogger(__name__)


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Read when this module is imported (kopf fixes a timer's interval at registration).
RESYNC_SECONDS = _seconds("IGBRIDGE_OPERATOR_RESYNC_SECONDS", 60.0)


def recheck_seconds() -> float:
    """A missing Secret or refused credentials: someone must act; look again at this pace."""
    return _seconds("IGBRIDGE_OPERATOR_RECHECK_SECONDS", 30.0)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig (no client library needed)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        # Read KUBECONFIG now: the library's default was fixed when it was imported.
        await kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    api = ApiClient()
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))
    memo["api"], memo["http"] = api, http

    # One token provider per Genesys client: a token is reused until it expires instead of
    # a new OAuth exchange on every reconcile of every channel.
    providers: dict[tuple[str, str, str], TokenProvider] = {}

    def integrations(spec: ChannelSpec, client_id: str, client_secret: str) -> Integrations:
        secret_digest = hashlib.sha256(client_secret.encode()).hexdigest()
        key = (spec.genesys.login_url, client_id, secret_digest)
        tokens = providers.get(key)
        if tokens is None:
            tokens = providers[key] = TokenProvider(
                http, spec.genesys.login_url, client_id, client_secret
            )
        return Integrations(GenesysRest(http, spec.genesys.api_url, tokens))

    ingress_class = os.environ.get("IGBRIDGE_CHANNEL_INGRESS_CLASS")
    config = OperatorConfig(
        relay_image=os.environ.get("IGBRIDGE_RELAY_IMAGE", OperatorConfig.relay_image),
        relay_grace_seconds=_seconds("IGBRIDGE_RELAY_GRACE_SECONDS", 90.0),
        ingress=IngressOptions(
            class_name=ingress_class,
            annotations=json.loads(os.environ.get("IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS", "{}")),
            tls_secret_template=os.environ.get("IGBRIDGE_CHANNEL_INGRESS_TLS_SECRET", ""),
        )
        if ingress_class
        else None,
    )
    subscribe = functools.partial(ensure_subscribed, http)
    memo["reconciler"] = Reconciler(Kube(api), integrations, subscribe, config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo["http"].aclose()
    await memo["api"].close()


def _channel(body: kopf.Body) -> Channel:
    meta = body.get("metadata", {})
    return Channel(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta.get("uid", ""),
        generation=meta.get("generation"),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


@contextmanager
def _retry_as_kopf() -> Iterator[None]:
    """The reconciler's two kinds of "not now" as kopf retries; neither is a hot loop."""
    try:
        yield
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except SpecProblem as exc:
        # The condition says what to fix; look again at a human's pace.
        raise kopf.TemporaryError(str(exc), delay=recheck_seconds()) from None


async def _reconcile(body: kopf.Body, memo: kopf.Memo) -> None:
    reconciler: Reconciler = memo["reconciler"]
    with _retry_as_kopf():
        await reconciler.reconcile(_channel(body))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile(body, memo)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def resync_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Repair drift (the integration, the workload, Meta's subscription), roll the relay
    when a referenced Secret changed, and notice a relay that stopped reporting."""
    await _reconcile(body, memo)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def relay_reported(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:
    """A relay pod's report (a status patch, which spec handlers do not see) turns the
    channel Ready, or not, now rather than at the next resync."""
    if type not in ("ADDED", "MODIFIED") or body.get("metadata", {}).get("deletionTimestamp"):
        return
    if not (body.get("status") or {}).get("relay"):
        return
    reconciler: Reconciler = memo["reconciler"]
    await reconciler.refresh_relay(_channel(body))


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo["reconciler"]
    with _retry_as_kopf():
        await reconciler.finalize(_channel(body))
