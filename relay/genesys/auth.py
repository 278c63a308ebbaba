"""OAuth client-credentials tokens for Genesys Cloud, cached and refreshed before expiry."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable

import httpx

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
        http: httpx.AsyncClient,
        login_url: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = f"{login_url}/oauth/token"
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        self._auth_header = f"Basic {basic}"
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.grants = 0

    async def token(self) -> str:
        """A valid access token, fetching a new one when none is cached or it is near expiry."""
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._expires_at:
                return self._token
            return await self._fetch()

    def invalidate(self, token: str) -> None:
        """Genesys refused ``token`` (401): forget it so the next call fetches a new one."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> str:
        try:
            resp = await self._http.post(
                self._url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": self._auth_header},
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if resp.status_code in (400, 401, 403):
            raise AuthError(
                f"Genesys refused the client credentials (HTTP {resp.status_code}): "
                "check IGBRIDGE_GENESYS_CLIENT_ID, IGBRIDGE_GENESYS_CLIENT_SECRET and the OAuth "
                "client's region"
            )
        if resp.status_code != 200:
            kind = classify_response(resp.status_code)
            raise TransientError(
                f"token endpoint answered HTTP {resp.status_code} ({kind})",
                status=resp.status_code,
                retry_after=retry_after_seconds(resp),
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
        self.grants += 1
        log.info("genesys token obtained", extra={"expires_in": lifetime})
        return token
