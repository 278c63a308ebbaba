"""What the relay knows about its own health, for /readyz, /metrics and the channel's status.

Readiness is only about taking webhooks in: the store answers (and, on SQLite, its disk
has room). Refused credentials are problems to report, never a reason to leave the
Service: a pod out of the Service loses Meta's and Genesys's webhooks, and Meta
unsubscribes an account whose webhook fails for about an hour. Messages wait in the store
until the credentials work again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Gauge

log = logging.getLogger(__name__)

GENESYS = "genesys"
INSTAGRAM = "instagram"
PLATFORMS = (GENESYS, INSTAGRAM)

# Below this much free space SQLite cannot be trusted to commit a webhook's events.
MIN_FREE_BYTES = 8 * 1024 * 1024
# How long a webhook the store refused keeps the relay unready. Free space is not the
# only way a write fails (a quota, a file-size limit, Redis refusing writes it cannot
# persist): the refusal itself is the signal. Bounded, because a pod out of its Service
# gets no webhooks to show the store works again; a kubelet probing every 10 s sees it
# three times.
WRITE_REFUSED_HOLD_SECONDS = 30.0


def recheck_delay(failures: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait before asking again after ``failures`` refusals in a row: doubling
    from ``base``, at most ``cap``. No jitter: credentials are re-checked by one task per
    pod, not by a crowd of clients."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2.0 ** min(failures - 1, 30)))


class RelayHealth:
    """The credential problems of both platforms, one message each (None: working).

    Setting a problem logs the change once, updates ``igbridge_credentials_ok`` and wakes
    whoever waits for a problem to appear (the credentials task).
    """

    def __init__(self, gauge: Gauge | None = None) -> None:
        self._problems: dict[str, str | None] = dict.fromkeys(PLATFORMS)
        self._gauge = gauge
        self._changed = asyncio.Event()
        # Told of every change (platform, problem): the delivery process tells the web
        # process, whose /readyz names the problems.
        self.on_change: Callable[[str, str | None], None] | None = None
        for platform in PLATFORMS:
            self._set_gauge(platform)

    @property
    def genesys_auth_error(self) -> str | None:
        return self._problems[GENESYS]

    @genesys_auth_error.setter
    def genesys_auth_error(self, problem: str | None) -> None:
        self.set(GENESYS, problem)

    @property
    def meta_token_error(self) -> str | None:
        return self._problems[INSTAGRAM]

    @meta_token_error.setter
    def meta_token_error(self, problem: str | None) -> None:
        self.set(INSTAGRAM, problem)

    def set(self, platform: str, problem: str | None) -> None:
        before = self._problems[platform]
        self._problems[platform] = problem
        if before != problem and self.on_change is not None:
            self.on_change(platform, problem)
        if (before is None) == (problem is None):
            return
        if problem is None:
            log.info("credentials work again", extra={"platform": platform})
        else:
            log.error(
                "credentials refused: webhooks are still accepted and kept",
                extra={"platform": platform, "problem": problem},
            )
        self._set_gauge(platform)
        self._changed.set()

    def problems(self) -> dict[str, str]:
        """The platforms whose credentials are refused, with what to fix."""
        return {p: problem for p, problem in self._problems.items() if problem is not None}

    async def wait_for_change(self) -> None:
        """Until a problem appears or clears."""
        await self._changed.wait()
        self._changed.clear()

    def _set_gauge(self, platform: str) -> None:
        if self._gauge is not None:
            self._gauge.labels(platform).set(0 if self._problems[platform] else 1)


def sqlite_disk_problem(store_url: str) -> str | None:
    """Why a SQLite store cannot take writes (its folder read-only, its disk full), or None.
    Other stores answer for themselves through ``ping``."""
    if not store_url.startswith("sqlite:///"):
        return None
    path = Path(store_url[len("sqlite:///") :])
    folder = path.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return f"sqlite store folder {folder}: {exc.strerror}"
    if free < MIN_FREE_BYTES:
        return f"sqlite store folder {folder}: disk full ({free} bytes free)"
    # SQLite writes a journal beside the database: the folder must take new files too.
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"sqlite store {path} is not writable"
    return None


class StoreWrites:
    """Whether the store took the latest webhook: /readyz is not ready for
    ``WRITE_REFUSED_HOLD_SECONDS`` after a refusal, unless a later write succeeds."""

    def __init__(
        self,
        hold: float = WRITE_REFUSED_HOLD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold = hold
        self._clock = clock
        self._refused_at: float | None = None

    def refused(self) -> None:
        self._refused_at = self._clock()

    def stored(self) -> None:
        self._refused_at = None

    def problem(self) -> str | None:
        at = self._refused_at
        if at is None or self._clock() - at > self._hold:
            return None
        return "the store refused a webhook's write (disk full, quota, or Redis refusing writes)"
