"""kopf registrations. Thin on purpose: they translate between kopf and the reconciler."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import kopf
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient
from prometheus_client import start_http_server

from igbridge.relay.channel_status import GROUP, PLURAL, VERSION
from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.rest import GenesysRest
from igbridge.relay.http import new_session

from . import metrics
from .channel import Channel
from .events import Emit, Event
from .integrations import Integrations
from .kube import Kube
from .problems import RetryLater, SpecProblem
from .reconcile import Reconciler
from .settings import OperatorSettings
from .spec import ChannelSpec
from .subscriptions import ensure_subscribed
from .tokens import MetaTokens

FINALIZER = f"{GROUP}/finalizer"
log = logging.getLogger(__name__)


def registry(config: OperatorSettings) -> kopf.OperatorRegistry:
    """Every handler, registered for one run of the operator with its settings (kopf
    fixes a timer's interval when it is registered)."""
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg)(login)
    kopf.on.startup(registry=reg)(functools.partial(startup, config=config))
    kopf.on.cleanup(registry=reg)(cleanup)
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(GROUP, VERSION, PLURAL, registry=reg)(reconcile_channel)
    kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=reg,
        interval=config.operator_resync_seconds,
        initial_delay=config.operator_resync_seconds,
    )(resync_channel)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)(relay_reported)
    kopf.on.delete(GROUP, VERSION, PLURAL, registry=reg)(delete_channel)
    return reg


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: the kubeconfig (no client library needed)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, config: OperatorSettings, **_: Any
) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        # Read KUBECONFIG now: the library's default was fixed when it was imported. It is
        # the Kubernetes clients' own variable (kopf's login reads it too), not a setting.
        await kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    if config.operator_metrics_port:
        server, _thread = start_http_server(config.operator_metrics_port, registry=metrics.REGISTRY)
        memo["metrics_server"] = server
    api = ApiClient()
    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0))
    # The Genesys client below is the relay's, which speaks aiohttp; the operator's own
    # calls (Meta subscriptions and tokens) stay on httpx.
    genesys_http = new_session(timeout=15.0, connect=5.0)
    memo["api"], memo["http"], memo["config"] = api, http, config
    memo["genesys_http"] = genesys_http

    # One token provider per Genesys client: a token is reused until it expires instead of
    # a new OAuth exchange on every reconcile of every channel.
    providers: dict[tuple[str, str, str], TokenProvider] = {}

    def integrations(spec: ChannelSpec, client_id: str, client_secret: str) -> Integrations:
        secret_digest = hashlib.sha256(client_secret.encode()).hexdigest()
        key = (spec.genesys.login_url, client_id, secret_digest)
        tokens = providers.get(key)
        if tokens is None:
            tokens = providers[key] = TokenProvider(
                genesys_http, spec.genesys.login_url, client_id, client_secret
            )
        return Integrations(GenesysRest(genesys_http, spec.genesys.api_url, tokens))

    subscribe = functools.partial(ensure_subscribed, http)
    memo["reconciler"] = Reconciler(Kube(api), integrations, subscribe, config, MetaTokens(http))


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "metrics_server" in memo:
        memo["metrics_server"].shutdown()
        memo["metrics_server"].server_close()
    await memo["http"].aclose()
    await memo["genesys_http"].close()
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


def _events(body: kopf.Body) -> Emit:
    """Events about this channel, posted by kopf in the background (RBAC: create on
    events)."""

    def emit(event: Event) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)

    return emit


@contextmanager
def _retry_as_kopf(config: OperatorSettings) -> Iterator[None]:
    """The reconciler's two kinds of "not now" as kopf retries; neither is a hot loop."""
    try:
        yield
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except SpecProblem as exc:
        # The condition says what to fix; look again at a human's pace.
        raise kopf.TemporaryError(str(exc), delay=config.operator_recheck_seconds) from None


async def _reconcile(body: kopf.Body, memo: kopf.Memo, handler: str) -> None:
    reconciler: Reconciler = memo["reconciler"]
    with _retry_as_kopf(memo["config"]), metrics.reconciling(handler):
        await reconciler.reconcile(_channel(body), _events(body))


async def reconcile_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile(body, memo, "reconcile")


async def resync_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Repair drift (the integration, the workload, Meta's subscription), roll the relay
    when a referenced Secret changed, and notice a relay that stopped reporting."""
    await _reconcile(body, memo, "resync")


async def relay_reported(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:
    """A relay pod's report (a status patch, which spec handlers do not see) turns the
    channel Ready, or not, now rather than at the next resync."""
    if type not in ("ADDED", "MODIFIED") or body.get("metadata", {}).get("deletionTimestamp"):
        return
    if not (body.get("status") or {}).get("relay"):
        return
    reconciler: Reconciler = memo["reconciler"]
    with metrics.reconciling("relay_report"):
        await reconciler.refresh_relay(_channel(body), _events(body))


async def delete_channel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo["reconciler"]
    with _retry_as_kopf(memo["config"]), metrics.reconciling("delete"):
        await reconciler.finalize(_channel(body), _events(body))
