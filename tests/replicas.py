"""Several relay processes on one real redis-server, and a Meta-like load that fails over.

Meta retries a webhook that did not get a 200; a load balancer sends the retry to another
replica. ``Load`` does both: each customer's messages go out in order (one thread owns a
customer), each to the next replica, retried on the next one on a 503 or a dead socket.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess, all_running

_prefixes = itertools.count()


@contextlib.contextmanager
def relay_replicas(
    sandbox: Sandbox, redis_url: str, tmp_path: Path, count: int, **env: str
) -> Iterator[list[RelayProcess]]:
    prefix = f"replicas{next(_prefixes)}"
    relays = []
    for n in range(count):
        settings = {
            "IGBRIDGE_STORE_URL": redis_url,
            "IGBRIDGE_STORE_PREFIX": prefix,
            # Short leases and backoff: a dead replica's work moves on within seconds.
            "IGBRIDGE_LEASE_SECONDS": "2",
            "IGBRIDGE_BACKOFF_CAP": "1",
            **env,
        }
        relay_env = sandbox.relay_env(tmp_path / "unused.db", **settings)
        relays.append(RelayProcess(relay_env, tmp_path / f"relay{n}.log"))
    with all_running(relays):
        yield relays


@dataclass
class Load:
    """Every customer's messages, delivered in order with fail-over and retries."""

    sandbox: Sandbox
    urls: Sequence[str]
    customers: int
    per_customer: int
    sent: dict[str, list[str]] = field(default_factory=dict)
    refused: int = 0  # answers other than 200 (503 while the store was down, ...)
    unreachable: int = 0  # connections to a dead replica
    accepted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._bodies: dict[str, list[dict[str, Any]]] = {}
        for c in range(self.customers):
            customer = f"77{c:03d}"
            texts = [f"{customer} #{i} 🙂" for i in range(self.per_customer)]
            self.sent[customer] = texts
            self._bodies[customer] = [
                self.sandbox.meta.webhook(
                    [self.sandbox.meta.messaging(customer, {"text": t}, ts_ms=10_000 + i)]
                )
                for i, t in enumerate(texts)
            ]

    @property
    def total(self) -> int:
        return self.customers * self.per_customer

    def _deliver(self, body: dict[str, Any], turn: int) -> None:
        for attempt in range(600):  # bounded: at most ~60 s of retries per message
            url = self.urls[(turn + attempt) % len(self.urls)]
            try:
                status = self.sandbox.meta.deliver_webhook(
                    f"{url}/webhooks/instagram", body, timeout=5.0
                ).status_code
            except httpx.HTTPError:
                with self._lock:
                    self.unreachable += 1
                time.sleep(0.05)
                continue
            with self._lock:
                if status == 200:
                    self.accepted += 1
                    return
                self.refused += 1
            time.sleep(0.1)
        raise AssertionError("a webhook was never accepted")

    def _customer(self, customer: str, offset: int) -> None:
        for i, body in enumerate(self._bodies[customer]):
            self._deliver(body, offset + i)

    def run(self, threads: int = 8) -> None:
        with ThreadPoolExecutor(threads) as pool:
            futures = [
                pool.submit(self._customer, customer, n) for n, customer in enumerate(self._bodies)
            ]
            for future in futures:
                future.result()

    def start(self, threads: int = 8) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(threads,), daemon=True)
        thread.start()
        return thread


def received_by_customer(sandbox: Sandbox) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for msg in sandbox.genesys.snapshot():
        out.setdefault(msg.from_id, []).append(msg.text or "")
    return out


def without_repeats(texts: list[str]) -> list[str]:
    """A customer's messages as first delivered (a redelivery repeats one in place)."""
    out: list[str] = []
    for text in texts:
        if text not in out:
            out.append(text)
    return out
