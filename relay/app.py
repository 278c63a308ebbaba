"""The relay's ASGI application: routes, and the components they share for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .config import Settings
from .delivery.inbound import InboundDelivery
from .delivery.intake import IntakeSplitter, Routing
from .delivery.outbound import OutboundDelivery
from .delivery.worker import QueueWorker
from .genesys.auth import TokenProvider
from .genesys.client import GenesysClient
from .health import RelayHealth, sqlite_disk_problem
from .meta.crm import CrmLookup
from .meta.graph import GraphClient
from .meta.media import MediaInfo, MediaProber
from .meta.send import SendClient
from .metrics import RelayMetrics
from .pipeline.guard import SpamFilter, parse_rules
from .pipeline.inbound import InboundContext
from .pipeline.loops import LoopBreaker
from .records import INBOUND, OUTBOUND
from .store import open_store
from .store.base import Store, StoreUnavailable
from .tasks.credentials import CredentialsWatch
from .tasks.maintenance import maintain, refresh_gauges
from .tasks.sla import SlaSweeper
from .tasks.status_report import StatusReporter
from .web.genesys import GenesysWebhook
from .web.instagram import InstagramWebhook

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeteredMedia:
    """Counts every media check's outcome."""

    inner: MediaProber
    metrics: RelayMetrics

    async def probe(self, url: str, declared_type: str) -> MediaInfo:
        info = await self.inner.probe(url, declared_type)
        self.metrics.media_probes.labels(info.note).inc()
        return info


@dataclass
class Relay:
    """Everything one relay process holds open: built at start-up, closed at shutdown."""

    settings: Settings
    store: Store
    metrics: RelayMetrics
    health: RelayHealth
    http: httpx.AsyncClient
    tokens: TokenProvider
    genesys: GenesysClient
    media: MediaProber
    graph: GraphClient
    inbound: QueueWorker
    outbound: QueueWorker
    crm: CrmLookup | None
    send: SendClient

    @classmethod
    async def start(cls, settings: Settings, metrics: RelayMetrics) -> Relay:
        store = open_store(settings.store_url, prefix=settings.store_key_prefix)
        await store.open()
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.genesys_timeout, connect=5.0),
            limits=httpx.Limits(max_connections=max(32, settings.worker_concurrency * 2)),
        )
        tokens = TokenProvider(
            http,
            settings.genesys_login,
            settings.genesys_client_id,
            settings.genesys_client_secret.get_secret_value(),
            refusal_cap=settings.credentials_recheck_cap,
        )
        genesys = GenesysClient(
            http, settings.genesys_api_url, settings.genesys_integration_id, tokens
        )
        media = MediaProber(
            settings.media_allowed_hosts,
            timeout=settings.media_timeout,
            ca_file=settings.media_ca_file,
        )
        graph = GraphClient(settings.graph_base, settings.meta_access_token.get_secret_value())
        health = RelayHealth(metrics.credentials_ok)
        rules = parse_rules(settings.guard)
        # Replicas share the loop state through Redis; one relay keeps it in memory.
        shared = settings.store_url.startswith(("redis://", "rediss://"))
        loops = LoopBreaker(rules.loops, store=store if shared else None)
        crm = (
            CrmLookup(
                settings.crm_url,
                timeout=settings.crm_timeout,
                token=settings.crm_token.get_secret_value() if settings.crm_token else None,
            )
            if settings.crm_url
            else None
        )
        ctx = InboundContext(
            media=MeteredMedia(media, metrics),
            profiles=graph,
            mentions=graph,
            account_id=settings.instagram_account_id,
            crm=crm,
        )
        handler = InboundDelivery(
            ctx,
            genesys,
            health,
            backoff_cap=settings.backoff_cap,
            spam=SpamFilter(rules, store=store if shared else None) if settings.guard else None,
            metrics=metrics,
            loops=loops,
            store=store,
        )
        worker = QueueWorker(
            store,
            INBOUND,
            handler,
            metrics,
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds,
        )
        send = SendClient(
            graph.http, settings.graph_base, settings.meta_access_token.get_secret_value()
        )
        replies = OutboundDelivery(
            store,
            send,
            genesys,
            health,
            metrics,
            human_agent_tag=settings.human_agent_tag,
            public_comment_replies=settings.comment_replies == "public",
            backoff_cap=settings.backoff_cap,
            max_attempts=settings.send_max_attempts,
            loops=loops,
        )
        outbound = QueueWorker(
            store,
            OUTBOUND,
            replies,
            metrics,
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds,
        )
        return cls(
            settings,
            store,
            metrics,
            health,
            http,
            tokens,
            genesys,
            media,
            graph,
            worker,
            outbound,
            crm,
            send,
        )

    async def close(self) -> None:
        if self.crm is not None:
            await self.crm.aclose()
        await self.media.aclose()
        await self.graph.aclose()
        await self.http.aclose()
        await self.store.close()


def create_app(settings: Settings) -> Starlette:
    metrics = RelayMetrics()
    holder: dict[str, Relay] = {}

    def relay() -> Relay:
        return holder["relay"]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        r = await Relay.start(settings, metrics)
        holder["relay"] = r
        routing = Routing(
            settings.instagram_account_id,
            tuple(settings.instagram_entry_ids),
            settings.standby,
        )
        splitter = IntakeSplitter(
            r.store, routing, metrics, r.inbound.wake, lease_seconds=settings.lease_seconds
        )
        webhook = InstagramWebhook(settings, r.store, metrics, splitter.wake)
        app.state.instagram_webhook = webhook
        app.state.genesys_webhook = GenesysWebhook(settings, r.store, metrics, r.outbound.wake)
        tasks = [
            asyncio.create_task(splitter.run(), name="intake-splitter"),
            asyncio.create_task(r.inbound.run(), name="inbound-worker"),
            asyncio.create_task(r.outbound.run(), name="outbound-worker"),
            asyncio.create_task(maintain(r.store), name="store-maintenance"),
        ]
        sweeper = SlaSweeper(
            r.store,
            r.genesys.rest,
            metrics,
            escalate_after=settings.window_escalate_after,
            priority=settings.window_priority,
            interval=settings.sla_sweep_seconds,
            alert_url=settings.alert_webhook_url,
            http=r.http,
        )
        tasks.append(asyncio.create_task(sweeper.run(), name="sla-sweeper"))
        watch = CredentialsWatch(settings, r.health, r.tokens, r.graph, r.send)
        tasks.append(asyncio.create_task(watch.run(), name="credentials"))
        if settings.channel_name and settings.channel_namespace:
            reporter = StatusReporter(
                settings, r.store, metrics, r.health, interval=settings.status_interval
            )
            tasks.append(asyncio.create_task(reporter.run(), name="status-report"))
        # What start-up built lives as long as the process: out of the collector's way, so
        # a full collection walks only what requests create (those set the ack's p99).
        gc.collect()
        gc.freeze()
        log.info("relay started", extra={"store": settings.store_url.split("://")[0]})
        try:
            yield
        finally:
            splitter.stop()
            await asyncio.gather(r.inbound.stop(), r.outbound.stop())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await r.close()
            gc.unfreeze()  # several relays in one process (tests) take turns
            log.info("relay stopped")

    async def instagram_get(request: Request) -> Response:
        handler: InstagramWebhook = request.app.state.instagram_webhook
        return await handler.handshake(request)

    async def instagram_post(request: Request) -> Response:
        handler: InstagramWebhook = request.app.state.instagram_webhook
        return await handler.receive(request)

    async def genesys_post(request: Request) -> Response:
        handler: GenesysWebhook = request.app.state.genesys_webhook
        return await handler.receive(request)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Ready means: webhooks can be taken in and stored. Refused credentials are named
        in ``problems`` but keep the pod in its Service: messages wait in the store until
        the credentials work again, and a pod out of the Service would lose the webhooks
        (Meta unsubscribes an account whose webhook keeps failing). The credentials task
        keeps ``health`` current; this route asks no platform anything."""
        r = relay()
        try:
            await r.store.ping()
            store_problem = sqlite_disk_problem(settings.store_url)
        except StoreUnavailable as exc:
            store_problem = str(exc)
        problems = r.health.problems()
        if store_problem is not None:
            problems = {"store": store_problem, **problems}
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        if problems:
            return JSONResponse({"status": "ready", "problems": problems})
        return JSONResponse({"status": "ready"})

    async def metrics_route(_: Request) -> Response:
        r = relay()
        # On a store error the gauges keep their last values; /readyz reports the store.
        with contextlib.suppress(StoreUnavailable):
            await refresh_gauges(r.store, metrics, settings.window_escalate_after)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    webhooks = [
        Route("/webhooks/instagram", instagram_get, methods=["GET"]),
        Route("/webhooks/instagram", instagram_post, methods=["POST"]),
        Route("/webhooks/genesys", genesys_post, methods=["POST"]),
    ]
    routes: list[BaseRoute] = list(webhooks)
    if settings.base_path:
        # Behind a proxy that forwards https://host/<path>/webhooks/... unchanged.
        routes.append(Mount(settings.base_path, routes=webhooks))
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
