"""Asking Meta about an access token: whose it is (``/me``), what it may do
(``/debug_token``, Facebook Login) and a fresh one (``/refresh_access_token``, Instagram
Login). I/O only; preflight.py judges the answers. Tokens travel in query strings, as
Meta's API takes them, so no URL here is ever logged."""

from __future__ import annotations

from typing import Any

import httpx

from .preflight import GraphFailure, Identity, Refreshed, TokenInfo
from .spec import Login


def _failure(resp: httpx.Response) -> GraphFailure:
    try:
        error = resp.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return GraphFailure(
        resp.status_code,
        code if isinstance(code, int) else None,
        str(message or f"HTTP {resp.status_code}"),
    )


async def _get(
    http: httpx.AsyncClient, url: str, params: dict[str, str]
) -> dict[str, Any] | GraphFailure:
    try:
        resp = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        return GraphFailure(0, None, f"Meta unreachable: {type(exc).__name__}")
    if resp.status_code != 200:
        return _failure(resp)
    try:
        body = resp.json()
    except ValueError:
        return GraphFailure(resp.status_code, None, "Meta answered an unreadable body")
    return body if isinstance(body, dict) else GraphFailure(200, None, "not a JSON object")


class MetaTokens:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def me(
        self, graph_url: str, version: str, token: str, login: Login
    ) -> Identity | GraphFailure:
        url = f"{graph_url.rstrip('/')}/{version}/me"
        # A Page token's /me is the Page: the Instagram account is the one linked to it.
        page_fields = "id,name,instagram_business_account{id,username}"
        fields = page_fields if login == "facebook" else "id,username"
        body = await _get(self._http, url, {"fields": fields, "access_token": token})
        if isinstance(body, GraphFailure):
            return body
        if login == "facebook":
            found = body.get("instagram_business_account")
            linked: dict[str, Any] = found if isinstance(found, dict) else {}
            name, username = body.get("name"), linked.get("username")
            return Identity(
                str(linked.get("id") or ""),
                username if isinstance(username, str) else None,
                page_id=str(body.get("id", "")),
                page_name=name if isinstance(name, str) else None,
            )
        username = body.get("username")
        return Identity(str(body.get("id", "")), username if isinstance(username, str) else None)

    async def debug(
        self, graph_url: str, version: str, token: str, app_token: str
    ) -> TokenInfo | GraphFailure:
        url = f"{graph_url.rstrip('/')}/{version}/debug_token"
        body = await _get(self._http, url, {"input_token": token, "access_token": app_token})
        if isinstance(body, GraphFailure):
            return body
        data = body.get("data")
        if not isinstance(data, dict):
            return GraphFailure(200, None, "debug_token answered no data")
        raw_error = data.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        expires = data.get("expires_at")
        scopes = data.get("scopes")
        return TokenInfo(
            is_valid=data.get("is_valid") is True,
            scopes=frozenset(s for s in scopes if isinstance(s, str))
            if isinstance(scopes, list)
            else frozenset(),
            # Meta answers 0 for a token that does not expire on a clock.
            expires_at=expires if isinstance(expires, int) and expires > 0 else None,
            error_code=error.get("code") if isinstance(error.get("code"), int) else None,
            error_message=str(error.get("message") or ""),
        )

    async def refresh(self, graph_url: str, token: str, now: float) -> Refreshed | GraphFailure:
        # Unversioned on graph.instagram.com, as Meta documents it.
        url = f"{graph_url.rstrip('/')}/refresh_access_token"
        body = await _get(
            self._http, url, {"grant_type": "ig_refresh_token", "access_token": token}
        )
        if isinstance(body, GraphFailure):
            return body
        new, expires_in = body.get("access_token"), body.get("expires_in")
        if not isinstance(new, str) or not new or not isinstance(expires_in, int):
            return GraphFailure(200, None, "refresh answered no access_token/expires_in")
        return Refreshed(new, int(now) + expires_in)
