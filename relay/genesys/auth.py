"""OAuth client-credentials tokens for Genesys Cloud, cached and refreshed before expiry.

A refusal is cached too: until its backoff has passed every caller gets the same AuthError
without a request, so nothing (a probe, a busy worker) can hammer the rate-limited token
endpoint with credentials it already refused.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable

import aiohttp

from ..health import recheck_delay
from ..http import TRANSPORT_ERRORS, fetch
from ..retry_after import retry_after_seconds
from .errors import AuthError, TransientError
from .http import classify_response

log = logging.getLogger(__name__)

# Refresh this long before the token expires, so no request carries a token that dies
# in flight (Genesys's default lifetime is 24 h).
REFRESH_MARGIN_SECONDS = 300.0


class TokenProvider:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        login_url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        refusal_cap: float = 300.0,
    ) -> None:
        self._http = http
        self._url = f"{login_url}/oauth/token"
        self._auth_header = _basic(client_id, client_secret)
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._refusal_cap = refusal_cap
        self._refused: str | None = None  # what was refused, safe to log
        self._refusals = 0  # in a row
        self._ask_again_at = 0.0
        self.grants = 0
        self.requests = 0  # token requests sent, granted or not

    async def token(self) -> str:
        """A valid access token, fetching a new one when none is cached or it is near expiry.

        Raises the cached AuthError while a refusal's backoff lasts."""
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._expires_at:
                return self._token
            if self._refused is not None and self._clock() < self._ask_again_at:
                raise AuthError(self._refused)
            return await self._fetch()

    @property
    def refused(self) -> str | None:
        """The last refusal, until a token is granted."""
        return self._refused

    def seconds_until_retry(self) -> float:
        """How long a refusal's backoff still lasts (0: the next call asks)."""
        if self._refused is None:
            return 0.0
        return max(0.0, self._ask_again_at - self._clock())

    def set_credentials(self, client_id: str, client_secret: str) -> bool:
        """Use these credentials from now on (a rotated Secret). True if they changed: the
        cached token and any refusal are dropped, so the next call asks at once."""
        header = _basic(client_id, client_secret)
        if header == self._auth_header:
            return False
        self._auth_header = header
        self._token = None
        self._refused = None
        self._refusals = 0
        self._ask_again_at = 0.0
        log.info("genesys client credentials changed")
        return True

    def invalidate(self, token: str) -> None:
        """Genesys refused ``token`` (401): forget it so the next call fetches a new one."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> str:
        self.requests += 1
        try:
            resp = await fetch(
                self._http,
                "POST",
                self._url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": self._auth_header},
            )
        except TRANSPORT_ERRORS as exc:
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if resp.status in (400, 401, 403):
            self._refusals += 1
            backoff = recheck_delay(self._refusals, cap=self._refusal_cap)
            self._ask_again_at = self._clock() + backoff
            self._refused = (
                f"Genesys refused the client credentials (HTTP {resp.status}): "
                "check IGBRIDGE_GENESYS_CLIENT_ID, IGBRIDGE_GENESYS_CLIENT_SECRET and the OAuth "
                "client's region"
            )
            log.warning(
                "genesys token refused",
                extra={"status": resp.status, "refusals": self._refusals, "ask_in": backoff},
            )
            raise AuthError(self._refused)
        if resp.status != 200:
            kind = classify_response(resp.status)
            raise TransientError(
                f"token endpoint answered HTTP {resp.status} ({kind})",
                status=resp.status,
                retry_after=retry_after_seconds(resp.headers),
            )
        try:
            body = resp.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 86400))
        except (ValueError, KeyError, TypeError):
            raise TransientError("token endpoint answered an unreadable body") from None
        margin = min(REFRESH_MARGIN_SECONDS, lifetime / 10)
        self._token = token
        self._expires_at = self._clock() + lifetime - margin
        self._refused = None
        self._refusals = 0
        self.grants += 1
        log.info("genesys token obtained", extra={"expires_in": lifetime})
        return token


def _basic(client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
    return f"Basic {basic}"
