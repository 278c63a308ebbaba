"""A store that refuses a webhook's write makes the relay unready, whatever the free space
says: through ``igbridge-relay serve`` as a real process whose files may not grow past a
limit (what a quota does: the disk has room, the writes fail), a webhook refused with 503
turns /readyz to 503 naming the store; the hold on readiness is bounded."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx

from igbridge.relay.health import StoreWrites
from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess

FILE_LIMIT = 2 * 1024 * 1024  # the relay's files (store, log) may not grow past this


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Children started inside inherit ``limit``, and get EFBIG instead of SIGXFSZ."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_refused_write_turns_readiness_false_with_free_space_on_the_disk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    with file_size_limit(FILE_LIMIT):
        relay.start()
    try:
        webhook = f"{relay.url}/webhooks/instagram"
        small = sandbox.meta.webhook([sandbox.meta.messaging("7401", {"text": "fits"})])
        assert sandbox.meta.deliver_webhook(webhook, small).status_code == 200
        assert httpx.get(f"{relay.admin_url}/readyz", timeout=5).status_code == 200

        # Larger than the files may grow: the store cannot take it.
        big = sandbox.meta.webhook(
            [sandbox.meta.messaging("7401", {"text": "x" * (FILE_LIMIT + 100_000)})]
        )
        refused = sandbox.meta.deliver_webhook(webhook, big)
        assert refused.status_code == 503, refused.text
        ready = httpx.get(f"{relay.admin_url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "refused a webhook's write" in ready.json()["problems"]["store"]
        assert httpx.get(f"{relay.url}/healthz", timeout=5).status_code == 200

        # A webhook the store takes again makes the relay ready again.
        assert sandbox.meta.deliver_webhook(webhook, small).status_code == 200
        assert httpx.get(f"{relay.admin_url}/readyz", timeout=5).status_code == 200
    finally:
        relay.stop()


def test_the_hold_after_a_refused_write_is_bounded() -> None:
    now = [100.0]
    writes = StoreWrites(hold=30.0, clock=lambda: now[0])
    assert writes.problem() is None
    writes.refused()
    assert writes.problem() is not None
    now[0] += 30.0
    assert writes.problem() is not None
    now[0] += 0.5  # past the hold: back in the Service, where the next webhook tells
    assert writes.problem() is None
    writes.refused()
    writes.stored()
    assert writes.problem() is None
