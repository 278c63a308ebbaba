"""The relay's ASGI application: routes, and the components they share for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .config import Settings
from .delivery.inbound import InboundDelivery
from .delivery.intake import IntakeSplitter, Routing
from .delivery.outbound import OutboundDelivery
from .delivery.worker import QueueWorker
from .genesys.auth import TokenProvider
from .genesys.client import GenesysClient
from .health import RelayHealth, StoreWrites, sqlite_disk_problem
from .http import close_session, new_session
from .link import DeliveryProcess
from .meta.crm import CrmLookup
from .meta.events import JustStored
from .meta.graph import GraphClient
from .meta.media import MediaInfo, MediaProber
from .meta.send import SendClient
from .metrics import RelayMetrics
from .pipeline.guard import SpamFilter, parse_rules
from .pipeline.inbound import InboundContext
from .pipeline.loops import LoopBreaker
from .records import INBOUND, OUTBOUND, limit_customer_records
from .store import open_store
from .store.base import Store, StoreUnavailable
from .tasks.credentials import CredentialsWatch
from .tasks.maintenance import maintain, refresh_gauges
from .tasks.sla import SlaClock, SlaSweeper
from .tasks.status_report import StatusReporter
from .web.base import client_gone
from .web.deletion import ROUTE as DELETION_ROUTE
from .web.deletion import DataDeletion
from .web.direct import DirectApp
from .web.genesys import ROUTE as GENESYS_ROUTE
from .web.genesys import GenesysWebhook
from .web.instagram import ROUTE as INSTAGRAM_ROUTE
from .web.instagram import InstagramWebhook

log = logging.getLogger(__name__)

Wake = Callable[[], None]


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
    http: aiohttp.ClientSession  # the Genesys calls' pool (and the SLA alert's)
    tokens: TokenProvider
    genesys: GenesysClient
    media: MediaProber
    graph: GraphClient
    inbound: QueueWorker
    outbound: QueueWorker
    crm: CrmLookup | None
    send: SendClient
    # Events the splitter just stored, for this process's inbound worker (no second decode).
    parsed: JustStored

    @classmethod
    async def start(cls, settings: Settings, metrics: RelayMetrics) -> Relay:
        store = open_store(settings.store_url, prefix=settings.store_key_prefix)
        await store.open()
        limit_customer_records(settings.retention_records_seconds)
        http = new_session(
            timeout=settings.genesys_timeout,
            connect=5.0,
            limit=max(32, settings.worker_concurrency * 2),
            lean=True,  # the hot POSTs: messages, receipts, the Send API
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
        shared = settings.store_url.startswith(("redis://", "rediss://", "redis+sentinel://"))
        loops = LoopBreaker(rules.loops, store=store if shared else None)
        # One relay's delivery process alone moves its customers' SLA clocks: it may
        # remember them instead of reading them per message.
        sla = SlaClock(store, remember=not shared)
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
            profile_attributes=frozenset(settings.profile_attributes),
        )
        parsed = JustStored()
        handler = InboundDelivery(
            ctx,
            genesys,
            health,
            backoff_cap=settings.backoff_cap,
            spam=SpamFilter(rules, store=store if shared else None) if settings.guard else None,
            metrics=metrics,
            loops=loops,
            store=store,
            parsed=parsed,
            sla=sla,
        )
        worker = QueueWorker(
            store,
            INBOUND,
            handler,
            metrics,
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.lease_seconds,
            # With replicas one of them splits webhooks and wakes only its own worker; the
            # others look often enough to share the deliveries.
            idle_poll=0.1 if shared else 0.5,
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
            sla=sla,
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
            parsed,
        )

    async def close(self) -> None:
        if self.crm is not None:
            await self.crm.aclose()
        await self.media.aclose()
        await self.graph.aclose()
        await close_session(self.http)
        await self.store.close()


@dataclass
class Delivery:
    """The delivery side: the splitter, both queue workers and the regular tasks. It runs
    in the web process (``inline``) or in a process of its own (``relay.link``)."""

    relay: Relay
    splitter: IntakeSplitter
    tasks: list[asyncio.Task[None]]

    @classmethod
    def start(cls, settings: Settings, r: Relay, metrics: RelayMetrics) -> Delivery:
        routing = Routing(
            settings.instagram_account_id,
            tuple(settings.instagram_entry_ids),
            settings.standby,
            settings.replay_horizon_ms,
        )
        splitter = IntakeSplitter(
            r.store,
            routing,
            metrics,
            r.inbound.wake,
            lease_seconds=settings.lease_seconds,
            shared=settings.store_url.startswith(("redis://", "rediss://", "redis+sentinel://")),
            parsed=r.parsed,
        )
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
        watch = CredentialsWatch(settings, r.health, r.tokens, r.graph, r.send)
        jobs = {
            "intake-splitter": splitter.run(),
            "inbound-worker": r.inbound.run(),
            "outbound-worker": r.outbound.run(),
            "store-maintenance": maintain(r.store, settings.retention),
            "sla-sweeper": sweeper.run(),
            "credentials": watch.run(),
        }
        if settings.channel_name and settings.channel_namespace:
            reporter = StatusReporter(
                settings, r.store, metrics, r.health, interval=settings.status_interval
            )
            jobs["status-report"] = reporter.run()
        tasks = [asyncio.create_task(job, name=name) for name, job in jobs.items()]
        return cls(r, splitter, tasks)

    async def stop(self) -> None:
        """Stop claiming, let in-flight jobs finish (or hand them back), end the tasks."""
        self.splitter.stop()
        await asyncio.gather(self.relay.inbound.stop(), self.relay.outbound.stop())
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def freeze_start_up() -> None:
    # What start-up built lives as long as the process: out of the collector's way, so a
    # full collection walks only what requests create (those set the ack's p99).
    gc.collect()
    gc.freeze()


@dataclass
class WebSide:
    """What the routes read: the store, and the credential problems the delivery side knows."""

    store: Store
    problems: Callable[[], dict[str, str]]


DeliveryMode = Literal["inline", "process"]


def create_app(settings: Settings, *, delivery: DeliveryMode = "inline") -> Starlette:
    """The relay's webhook app. ``inline``: everything in this process (the sandbox, tests);
    ``process``: this process answers webhooks and a child process delivers (``serve``).

    ``app.state.admin`` is the admin app (``/healthz``, ``/readyz``, ``/metrics``), served
    on a port of its own from the same event loop: metrics and readiness are not for the
    internet, and probes must get through however many clients hold the webhook port. It
    has no lifespan: before this app's start-up and from its shutdown on, it is not ready."""
    metrics = RelayMetrics()
    holder: dict[str, WebSide] = {}
    writes = StoreWrites()  # the webhooks' writes, for /readyz

    def relay() -> WebSide | None:
        return holder.get("relay")

    def watched(status: int) -> None:
        # A webhook route answers 503 only when the store refused its write.
        if status == 503:
            writes.refused()
        elif status < 300:
            writes.stored()

    def web_routes(app: DirectApp, store: Store, wake_in: Wake, wake_out: Wake) -> None:
        instagram = InstagramWebhook(settings, store, metrics, wake_in, watched)
        app.state.instagram_webhook = instagram
        # The webhooks' POSTs skip Starlette's routing (the routes below stay for the rest).
        for route, hook in (
            (INSTAGRAM_ROUTE, instagram),
            (GENESYS_ROUTE, GenesysWebhook(settings, store, metrics, wake_out, watched)),
        ):
            app.direct([route, settings.base_path + route] if settings.base_path else [route], hook)
        app.state.data_deletion = DataDeletion(settings, store, metrics)

    @asynccontextmanager
    async def inline(app: DirectApp) -> AsyncIterator[None]:
        r = await Relay.start(settings, metrics)
        d = Delivery.start(settings, r, metrics)
        holder["relay"] = WebSide(r.store, r.health.problems)
        web_routes(app, r.store, d.splitter.wake, r.outbound.wake)
        freeze_start_up()
        log.info("relay started", extra={"store": settings.store_url.split("://")[0]})
        try:
            yield
        finally:
            holder.clear()  # /readyz: not ready from here on
            await d.stop()
            await r.close()
            gc.unfreeze()  # several relays in one process (tests) take turns
            log.info("relay stopped")

    @asynccontextmanager
    async def separate(app: DirectApp) -> AsyncIterator[None]:
        store = open_store(settings.store_url, prefix=settings.store_key_prefix, claims=False)
        await store.open()  # first: the schema exists before the delivery process opens it
        child = await DeliveryProcess.spawn()
        metrics.delivery_pid = child.pid  # its CPU and memory on /metrics

        def delivery_died(code: int) -> None:
            # A relay that acks webhooks nobody delivers is worse than one that restarts.
            app.state.delivery_exit_code = code
            stop_server: Callable[[], None] | None = getattr(app.state, "stop_server", None)
            if stop_server is not None:
                stop_server()
            else:
                os.kill(os.getpid(), signal.SIGTERM)

        child.on_exit = delivery_died
        holder["relay"] = WebSide(store, lambda: dict(child.problems))
        web_routes(app, store, child.wake_intake, child.wake_outbound)
        freeze_start_up()
        log.info(
            "relay started",
            extra={"store": settings.store_url.split("://")[0], "delivery_pid": child.pid},
        )
        try:
            yield
        finally:
            holder.clear()
            await child.stop()
            await store.close()
            gc.unfreeze()
            log.info("relay stopped")

    lifespan = separate if delivery == "process" else inline

    async def instagram_get(request: Request) -> Response:
        handler: InstagramWebhook = request.app.state.instagram_webhook
        return await handler.handshake(request)

    async def posted_direct(request: Request) -> Response:
        # A webhook's POST is answered by its raw ASGI endpoint (DirectApp) before routing;
        # the route is here so that other methods get 405, not 404.
        raise RuntimeError(f"{request.url.path}: a POST that missed its direct endpoint")

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Ready means: webhooks can be taken in and stored. Refused credentials are named
        in ``problems`` but keep the pod in its Service: messages wait in the store until
        the credentials work again, and a pod out of the Service would lose the webhooks
        (Meta unsubscribes an account whose webhook keeps failing). The credentials task
        keeps ``health`` current; this route asks no platform anything."""
        r = relay()
        if r is None:
            not_running = {"relay": "starting or stopping"}
            return JSONResponse({"status": "not ready", "problems": not_running}, status_code=503)
        try:
            await r.store.ping()
            store_problem = sqlite_disk_problem(settings.store_url) or writes.problem()
        except StoreUnavailable as exc:
            store_problem = str(exc)
        problems = r.problems()
        if store_problem is not None:
            problems = {"store": store_problem, **problems}
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        if problems:
            return JSONResponse({"status": "ready", "problems": problems})
        return JSONResponse({"status": "ready"})

    async def metrics_route(_: Request) -> Response:
        r = relay()
        # On a store error the gauges keep their last values; /readyz reports the store.
        if r is not None:
            with contextlib.suppress(StoreUnavailable):
                await refresh_gauges(r.store, metrics, settings.window_escalate_after)
        return Response(generate_latest(metrics.exposed()), media_type=CONTENT_TYPE_LATEST)

    async def deletion_post(request: Request) -> Response:
        handler: DataDeletion = request.app.state.data_deletion
        return await handler.request(request)

    async def deletion_status(request: Request) -> Response:
        handler: DataDeletion = request.app.state.data_deletion
        return await handler.status(request)

    webhooks = [
        Route("/webhooks/instagram", instagram_get, methods=["GET"]),
        Route(GENESYS_ROUTE, posted_direct, methods=["POST"]),
        Route(DELETION_ROUTE, deletion_post, methods=["POST"]),
        Route(DELETION_ROUTE + "/{code}", deletion_status, methods=["GET"]),
    ]
    routes: list[BaseRoute] = list(webhooks)
    if settings.base_path:
        # Behind a proxy that forwards https://host/<path>/webhooks/... unchanged.
        routes.append(Mount(settings.base_path, routes=webhooks))
    # /healthz on the webhook port too: cloud load balancers health-check the port they
    # send traffic to (GKE's Ingress takes the readiness probe's path only when the probe is
    # on that port, else asks for "/"). It says "alive" and nothing else.
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    admin = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
        ]
    )

    async def disconnected(request: Request, _: Exception) -> Response:
        return client_gone(metrics, request.url.path)

    app = DirectApp(
        routes=routes, lifespan=lifespan, exception_handlers={ClientDisconnect: disconnected}
    )
    app.state.registry = metrics.registry  # the server's own counters join /metrics
    app.state.admin = admin
    return app
