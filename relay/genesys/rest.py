"""Authenticated JSON requests to the Genesys Cloud API, with errors sorted into the
error tree: one place for tokens, the single retry on 401, and status classification."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ..http import fetch
from ..retry_after import retry_after_seconds
from .auth import TokenProvider
from .errors import PermanentError, TransientError
from .http import classify_response, error_reason

# Genesys (and the seed's "???" failure) need the charset spelled out.
JSON_UTF8 = "application/json; charset=utf-8"


def encode_json(body: object) -> bytes:
    """UTF-8 JSON with characters as themselves, never ``?`` and never lossy."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class NotFound(PermanentError):
    """HTTP 404: the object is gone (callers that delete treat this as success)."""


class GenesysRest:
    def __init__(self, http: aiohttp.ClientSession, api_url: str, tokens: TokenProvider) -> None:
        self.http = http
        self.api = api_url.rstrip("/")
        self.tokens = tokens
        # The headers of the current token, built once per token rather than per request
        # (aiohttp copies what it is given, so sharing them is safe).
        self._for_token = ""
        self._plain: dict[str, str] = {}
        self._with_json: dict[str, str] = {}

    def _headers(self, token: str, *, json_body: bool) -> dict[str, str]:
        if token != self._for_token:
            self._plain = {"Authorization": f"Bearer {token}"}
            self._with_json = {**self._plain, "Content-Type": JSON_UTF8}
            self._for_token = token
        return self._with_json if json_body else self._plain

    async def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``body``: JSON values, or bytes already encoded as JSON."""
        content = body if body is None or isinstance(body, bytes) else encode_json(body)
        for attempt in (1, 2):
            token = await self.tokens.token()
            headers = self._headers(token, json_body=content is not None)
            try:
                resp = await fetch(
                    self.http,
                    method,
                    f"{self.api}{path}",
                    data=content,
                    params=params,
                    headers=headers,
                )
            except TimeoutError:
                raise TransientError("Genesys timed out") from None
            except aiohttp.ClientError as exc:
                raise TransientError(f"Genesys unreachable: {type(exc).__name__}") from None
            if resp.status == 401 and attempt == 1:
                # The token was revoked or expired early: fetch a new one, try once more.
                self.tokens.invalidate(token)
                continue
            kind = classify_response(resp.status)
            if kind == "ok":
                try:
                    parsed = resp.json() if resp.body else {}
                except ValueError:
                    return {}
                return parsed if isinstance(parsed, dict) else {"entities": parsed}
            if kind == "transient":
                raise TransientError(
                    error_reason(resp),
                    status=resp.status,
                    retry_after=retry_after_seconds(resp.headers),
                )
            if resp.status == 404:
                raise NotFound(error_reason(resp), status=404)
            raise PermanentError(error_reason(resp), status=resp.status)
        raise TransientError("Genesys refused a freshly issued token (HTTP 401)", status=401)
