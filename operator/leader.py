"""Standby replicas: the operator acts only while it holds a ``coordination.k8s.io`` Lease.

kopf's own peering pauses an operator only for one of *higher* priority: replicas of one
Deployment share a priority and would all act, and a newcomer acts before the old one has
paused. A Lease is the Kubernetes controllers' way (client-go, controller-runtime): a
standby starts kopf only once the Lease is its own, and the holder that cannot renew in
time exits at once, before the Lease can expire for anyone else. The election itself is
kubernetes_asyncio's; this module runs it on a thread of its own, bounds each of its
calls, serves the standby's liveness and metrics (``igbridge_operator_leader`` 0: a
scrape that fails means a replica down, not one standing by), ends the process on a lost
Lease and hands the Lease over on a clean exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIServer

import aiohttp
import aiohttp.web
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration, CoordinationV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock
from prometheus_client import start_http_server

from . import metrics

log = logging.getLogger("igbridge.operator.leader")

# A call that fails so is a failed attempt, which the election retries; each call is also
# bounded in time (aiohttp's own default is five minutes).
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@dataclass(frozen=True)
class LeaseTiming:
    """A Lease's duration and what follows from it. Safety needs a holder that cannot
    renew to have exited (``holder_gives_up_after`` its last renewal) before a standby may
    take the Lease (``duration`` after it saw that renewal)."""

    duration: int  # whole seconds: the Lease's leaseDurationSeconds
    retry: float
    renew_deadline: float

    @classmethod
    def of(cls, duration: int) -> LeaseTiming:
        if duration < MIN_LEASE_SECONDS:
            raise ValueError(f"a lease of {duration}s is too short (at least {MIN_LEASE_SECONDS}s)")
        # client-go's defaults are 15/10/2; the library wants retry >= 1.
        retry = max(1.0, duration * 2 / 15)
        return cls(duration=duration, retry=retry, renew_deadline=duration * 0.6)

    @property
    def call_timeout(self) -> float:
        """Each API call's bound: an attempt (a read and a write) fits in ``retry``."""
        return self.retry / 2

    @property
    def holder_gives_up_after(self) -> float:
        """Seconds after its last renewal was written by which a holder that cannot renew
        has exited: that write's answer, the pause, the renew deadline, and the attempt
        that started just before the deadline."""
        return self.call_timeout + self.retry + self.renew_deadline + self.retry

    @property
    def takeover_within(self) -> float:
        """Seconds from a holder's death to a standby acting (kopf's start not counted):
        the standby sees the holder's last renewal up to ``retry`` late, waits
        ``duration``, and tries every ``retry``."""
        return self.duration + 2 * self.retry + self.call_timeout


MIN_LEASE_SECONDS = 7


def parse_lease(value: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` → (namespace, name)."""
    namespace, slash, name = value.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"expected NAMESPACE/NAME, got {value!r}")
    return namespace, name


def identity() -> str:
    """The pod's name (its hostname) and a random part: a restarted container is a new
    candidate, never mistaken for the one that held the Lease before."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class BoundedLeaseLock(LeaseLock):
    """kubernetes_asyncio's Lease lock, with every call bounded in time and a network
    error counted as a failed attempt (retried) rather than raised out of the election."""

    def __init__(self, *args: object, timeout: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.timeout = timeout

    async def get(
        self, name: str, namespace: str
    ) -> tuple[bool, LeaderElectionRecord] | tuple[bool, Exception] | tuple[bool, None]:
        try:
            async with asyncio.timeout(self.timeout):
                return await super().get(name, namespace)
        except NETWORK_ERRORS as exc:
            log.warning("reading lease %s/%s failed: %s", namespace, name, type(exc).__name__)
            failed = ApiException(status=503, reason=type(exc).__name__)
            failed.body = json.dumps({"code": 503}).encode()  # what the election inspects
            return False, failed

    async def create(
        self, name: str, namespace: str, election_record: LeaderElectionRecord
    ) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return await super().create(name, namespace, election_record)
        except NETWORK_ERRORS as exc:
            log.warning("creating lease %s/%s failed: %s", namespace, name, type(exc).__name__)
            return False

    async def update(self, name: str, namespace: str, updated_record: LeaderElectionRecord) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return await super().update(name, namespace, updated_record)
        except NETWORK_ERRORS as exc:
            log.warning("renewing lease %s/%s failed: %s", namespace, name, type(exc).__name__)
            return False


async def api_client() -> ApiClient:
    """A client of its own (kopf and the handlers log in separately): the pod's service
    account, else the kubeconfig in ``KUBECONFIG``."""
    configuration = Configuration()
    try:
        kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        await kube_config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return ApiClient(configuration=configuration)


async def serve_standby_liveness(url: str) -> aiohttp.web.AppRunner:
    """A standby answers the liveness probe itself (kopf, which would, is not running)."""

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"standby": True})

    parts = urlsplit(url)
    app = aiohttp.web.Application()
    app.router.add_get(parts.path or "/", healthz)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, parts.hostname, parts.port or 80).start()
    return runner


def serve_standby_metrics(port: int) -> WSGIServer | None:
    """The operator's /metrics while standing by, on the port the leader's kopf startup
    serves them on (0: not served), so Prometheus scrapes every replica alike."""
    if not port:
        return None
    server, _thread = start_http_server(port, registry=metrics.REGISTRY)
    return server


def _stop_serving(server: WSGIServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()  # the port is free for kopf's startup to bind


def _exit_now(code: int) -> None:
    """No cleanup: kopf's graceful stop could let a handler act after the Lease is gone."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def release(api: ApiClient, namespace: str, name: str, holder: str) -> None:
    """Hand the Lease over at once (as client-go's ReleaseOnCancel): an empty holder is
    taken by the next standby's next attempt instead of after the whole duration."""
    leases = CoordinationV1Api(api)
    try:
        async with asyncio.timeout(5):
            lease = await leases.read_namespaced_lease(name, namespace)
            if lease.spec is None or lease.spec.holder_identity != holder:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            await leases.replace_namespaced_lease(name, namespace, lease)
        log.info("released lease %s/%s", namespace, name)
    except (ApiException, *NETWORK_ERRORS) as exc:
        # Not fatal: the standby takes over when the Lease expires instead.
        log.warning("releasing lease %s/%s failed: %s", namespace, name, type(exc).__name__)


class Elector(threading.Thread):
    """The election on a thread and loop of its own: a handler that holds kopf's loop
    (a slow import, a synchronous call) must not starve the renewals, or the holder would
    give up a Lease it could have kept."""

    def __init__(
        self, namespace: str, name: str, timing: LeaseTiming, on_acquired: Callable[[], None]
    ) -> None:
        super().__init__(name="lease-election", daemon=True)
        self.lease = (namespace, name)
        self.timing = timing
        self.on_acquired = on_acquired
        self.me = identity()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._elect())

    async def _elect(self) -> None:
        namespace, name = self.lease
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        api = await api_client()
        lock = BoundedLeaseLock(name, namespace, self.me, api, timeout=self.timing.call_timeout)

        async def leading() -> None:
            log.info("acquired lease %s/%s as %s; operating", namespace, name, self.me)
            self.on_acquired()

        async def lost() -> None:
            log.error("lost lease %s/%s; exiting so that a standby takes over", namespace, name)
            _exit_now(1)

        timing = self.timing
        election = LeaderElection(
            Config(lock, timing.duration, timing.renew_deadline, timing.retry, leading, lost)
        )
        log.info("standing by for lease %s/%s as %s", namespace, name, self.me)
        electing = asyncio.create_task(election.run())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({electing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if electing.done():
            # The election ended on an error of its own: never operate without renewing.
            log.error("lease election %s/%s failed: %r", namespace, name, electing.exception())
            _exit_now(1)
        electing.cancel()
        await asyncio.gather(electing, return_exceptions=True)
        await release(api, namespace, name, self.me)
        await api.close()

    def stop(self) -> None:
        """Stop renewing and hand the Lease over; returns once done (or after 15 s)."""
        if self._ready.wait(5) and self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(15)


async def run_while_leading(
    operate: Callable[[], Awaitable[None]],
    *,
    namespace: str,
    name: str,
    timing: LeaseTiming,
    liveness: str,
    metrics_port: int = 0,
) -> None:
    """Wait as a standby until the Lease is ours, then ``operate`` while it stays ours.
    A lost Lease ends the process (exit 1; the pod restarts as a standby); ``operate``
    ending (a signal) releases the Lease for the next standby."""
    loop = asyncio.get_running_loop()
    acquired: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not acquired.done():
            acquired.set_result(None)

    def on_acquired() -> None:
        loop.call_soon_threadsafe(resolve)

    metrics.LEADER.set(0)
    standby = await serve_standby_liveness(liveness)
    standby_metrics = serve_standby_metrics(metrics_port)
    elector = Elector(namespace, name, timing, on_acquired)
    elector.start()
    try:
        await acquired
        # kopf serves the liveness endpoint from now on, and its startup the metrics.
        await standby.cleanup()
        await asyncio.to_thread(_stop_serving, standby_metrics)
        standby_metrics = None
        metrics.LEADER.set(1)
        await operate()
    finally:
        await standby.cleanup()
        await asyncio.to_thread(_stop_serving, standby_metrics)
        await asyncio.to_thread(elector.stop)
