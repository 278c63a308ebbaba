"""Re-checks refused credentials on a schedule, so a fixed or rotated one clears the problem
without a restart and without waiting for traffic.

One task per pod. At start it asks both platforms once (the Genesys token, Meta's
``GET /me?fields=id``), so a wrong credential is reported before the first message. While a
credential is refused it asks again after 1, 2, 4, ... seconds, at most
``IGBRIDGE_CREDENTIALS_RECHECK_CAP``: for Genesys the token provider keeps that backoff
(deliveries share it), for Instagram this task does. While both work it looks again every
``HEALTHY_RECHECK_SECONDS`` (a cached Genesys token costs nothing; one Graph call for Meta),
which finds an expired or revoked Instagram token before an agent's reply does.

Secrets read from files (``<NAME>_FILE``, the operator's mounted Secrets) are read again on
every tick: Kubernetes swaps a mounted Secret's files in place when the Secret changes, and
the new value is used from then on. Secrets given directly in the environment only change
with a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..config import Settings
from ..genesys.auth import TokenProvider
from ..genesys.errors import AuthError, TransientError
from ..health import RelayHealth, recheck_delay
from ..meta.graph import GraphClient
from ..meta.send import SendClient, SendErrorKind, classify
from ..pipeline.receipts import TOKEN_PROBLEM

log = logging.getLogger(__name__)

HEALTHY_RECHECK_SECONDS = 900.0
# How often secret files are read again and due checks looked for.
TICK_SECONDS = 5.0


class CredentialsWatch:
    def __init__(
        self,
        settings: Settings,
        health: RelayHealth,
        tokens: TokenProvider,
        graph: GraphClient,
        send: SendClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._health = health
        self._tokens = tokens
        self._graph = graph
        self._send = send
        self._clock = clock
        self._cap = settings.credentials_recheck_cap
        self._tick = min(TICK_SECONDS, self._cap)
        self._genesys_id = settings.genesys_client_id
        self._genesys_secret = settings.genesys_client_secret.get_secret_value()
        self._meta_token = settings.meta_access_token.get_secret_value()
        self._meta_refusals = 0
        self._meta_due = 0.0
        self._healthy_due = 0.0

    async def run(self) -> None:
        started = False
        while True:
            try:
                if started:
                    await self.tick()
                else:
                    await self.check_genesys()
                    await self.check_instagram()
                    self._healthy_due = self._clock() + HEALTHY_RECHECK_SECONDS
                    started = True
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the re-checks for good
                log.exception("credentials re-check failed")
            # A delivery that meets a refusal wakes the loop, which then paces the re-checks.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._health.wait_for_change(), self._tick)

    async def tick(self) -> None:
        """Read secret files again and make the checks that are due."""
        now = self._clock()
        if self._reload_genesys() or (
            self._health.genesys_auth_error is not None and self._tokens.seconds_until_retry() == 0
        ):
            await self.check_genesys()
        if self._reload_instagram():
            await self.check_instagram()
        elif self._health.meta_token_error is not None:
            if self._meta_refusals == 0:  # refused by a send, not by a check of ours
                self._meta_refusals = 1
                self._meta_due = now + recheck_delay(1, cap=self._cap)
            if now >= self._meta_due:
                await self.check_instagram()
        else:
            self._meta_refusals = 0
        if now >= self._healthy_due:
            self._healthy_due = now + HEALTHY_RECHECK_SECONDS
            if self._health.genesys_auth_error is None:
                await self.check_genesys()
            if self._health.meta_token_error is None:
                await self.check_instagram()

    async def check_genesys(self) -> None:
        try:
            await self._tokens.token()
        except AuthError as exc:
            self._health.genesys_auth_error = str(exc)
        except TransientError as exc:
            # Genesys unreachable says nothing about the credentials: keep what we knew.
            log.info("genesys token endpoint unavailable", extra={"error": str(exc)})
        else:
            self._health.genesys_auth_error = None

    async def check_instagram(self) -> None:
        error = await self._graph.check_token()
        if error is None:
            self._meta_refusals = 0
            self._health.meta_token_error = None
            return
        if classify(error) is not SendErrorKind.TOKEN:
            # A 5xx, a timeout, a throttle: no verdict on the token; ask again later.
            delay = recheck_delay(max(1, self._meta_refusals), cap=self._cap)
            self._meta_due = self._clock() + delay
            log.info(
                "instagram token check inconclusive",
                extra={"status": error.status, "code": error.code, "error": error.message},
            )
            return
        self._meta_refusals += 1
        self._meta_due = self._clock() + recheck_delay(self._meta_refusals, cap=self._cap)
        self._health.meta_token_error = TOKEN_PROBLEM

    def _reload_genesys(self) -> bool:
        """True if the client id or secret file now holds something new (then in use)."""
        client_id = self._settings.reread_secret("genesys_client_id") or self._genesys_id
        secret = self._settings.reread_secret("genesys_client_secret") or self._genesys_secret
        if (client_id, secret) == (self._genesys_id, self._genesys_secret):
            return False
        self._genesys_id, self._genesys_secret = client_id, secret
        return self._tokens.set_credentials(client_id, secret)

    def _reload_instagram(self) -> bool:
        """True if the access token file now holds a new token (then in use)."""
        token = self._settings.reread_secret("meta_access_token")
        if token is None or token == self._meta_token:
            return False
        self._meta_token = token
        self._graph.set_access_token(token)
        self._send.set_access_token(token)
        self._meta_refusals = 0
        log.info("instagram access token changed")
        return True
