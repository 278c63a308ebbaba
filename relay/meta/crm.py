"""An optional CRM lookup over HTTP, merged into the message's custom attributes.

``GET IGBRIDGE_CRM_URL?igsid=…&username=…`` must answer a flat JSON object. The call has a
strict timeout, answers are cached, and after repeated failures the circuit opens for a
while: a slow or broken CRM never holds a message up beyond the timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..http import TRANSPORT_ERRORS, fetch, new_session
from .graph import TTLCache

log = logging.getLogger(__name__)

VALUE_LIMIT = 500
MAX_FIELDS = 30


class CrmRefused(Exception):
    """The CRM answered, but not with a 2xx."""


class CrmLookup:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        token: str | None = None,
        ttl: float = 600.0,
        failure_ttl: float = 60.0,
        failures_to_open: int = 5,
        open_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Made inside a running event loop (it opens its session)."""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = new_session(timeout=timeout)
        self._url = url
        self._timeout = timeout
        self._cache: TTLCache[str, dict[str, str]] = TTLCache(10_000, clock)
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._failures = 0
        self._failures_to_open = failures_to_open
        self._open_seconds = open_seconds
        self._open_until = 0.0
        self._clock = clock
        self.calls = 0

    async def aclose(self) -> None:
        await self._http.close()

    async def lookup(self, igsid: str, username: str | None) -> dict[str, str]:
        hit, cached = self._cache.get(igsid)
        if hit:
            return cached or {}
        if self._clock() < self._open_until:
            return {}  # circuit open: don't wait for a CRM that keeps failing
        self.calls += 1
        params = {"igsid": igsid, **({"username": username} if username else {})}
        try:
            async with asyncio.timeout(self._timeout):
                resp = await fetch(
                    self._http, "GET", self._url, params=params, headers=self._headers
                )
            if not resp.ok:
                raise CrmRefused(f"HTTP {resp.status}")
            body = resp.json()
            if not isinstance(body, dict):
                raise ValueError("the CRM did not answer a JSON object")
        except (*TRANSPORT_ERRORS, CrmRefused, ValueError) as exc:
            self._failed(exc)
            self._cache.put(igsid, {}, self._failure_ttl)
            return {}
        self._failures = 0
        fields = {
            str(k)[:100]: str(v)[:VALUE_LIMIT]
            for k, v in list(body.items())[:MAX_FIELDS]
            if isinstance(v, (str, int, float, bool))
        }
        self._cache.put(igsid, fields, self._ttl)
        return fields

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        log.warning("crm lookup failed", extra={"error": type(exc).__name__})
        if self._failures >= self._failures_to_open:
            self._open_until = self._clock() + self._open_seconds
            self._failures = 0
            log.warning("crm circuit open", extra={"seconds": self._open_seconds})
