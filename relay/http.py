"""The relay's outgoing HTTP: aiohttp sessions, and a whole answer read into one shape.

aiohttp rather than httpx on the hot path: at 16 concurrent POSTs httpx spends ~1.3 ms of
CPU per request (its pool is scanned on every request), aiohttp a tenth of that
(``bench/http_client.py``). A session must be made inside a running event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import urllib.request
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler
from multidict import CIMultiDictProxy

from .http1 import LEAN_METHODS, Http1Pool

# What a request may raise without an answer: refused or dropped connections, TLS failures,
# bad URLs (aiohttp.ClientError), and every timeout (aiohttp's are TimeoutError subclasses).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read to its end (the connection is back in the pool)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (empty, HTML, bad UTF-8)."""
        return json.loads(self.body)


# Sessions whose plain POSTs go through a lean pool of their own (``new_session(lean=True)``).
_lean: weakref.WeakKeyDictionary[aiohttp.ClientSession, Http1Pool] = weakref.WeakKeyDictionary()


def new_session(
    *,
    timeout: float,
    connect: float | None = None,
    limit: int = 100,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    abort_on_close: bool = False,
    lean: bool = False,
) -> aiohttp.ClientSession:
    """A session with its own connection pool of ``limit`` connections.

    ``timeout`` bounds a whole request (connecting, sending, the answer's last byte);
    ``connect`` the TCP and TLS set-up alone. Certificates come from the system's store, or
    ``tls`` when given. No cookies are kept: no platform here should set state on us.
    Proxies: see ``env_proxy``.

    ``abort_on_close``: a connection closed before its answer was read to the end (a
    timeout, a body not wanted) is dropped at once. A TLS close would first wait for the
    server's close_notify, reading whatever the server sends until then: all of a video
    the caller asked one byte of.

    ``lean``: POSTs of bytes to hosts no proxy is set for go through ``relay.http1``
    (a fifth of aiohttp's CPU), with the same limit, timeouts and certificates; close
    such a session with ``close_session``.
    """
    if lean and headers:
        raise ValueError("a lean session sends no default headers")
    connector = aiohttp.TCPConnector(limit=limit, ssl=tls if tls is not None else True)
    if abort_on_close:
        # aiohttp has no public seam for this: the connector's protocol factory.
        connector._factory = functools.partial(_aborting_handler, connector._loop)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect),
        headers=headers,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    if lean:
        _lean[session] = Http1Pool(limit=limit, connect_timeout=connect, tls=tls)
    return session


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close the session and its lean pool, if it has one."""
    pool = _lean.pop(session, None)
    if pool is not None:
        await pool.close()
    await session.close()


class _AbortingHandler(ResponseHandler):
    def close(self) -> None:
        self.abort()


def _aborting_handler(loop: asyncio.AbstractEventLoop) -> ResponseHandler:
    return _AbortingHandler(loop)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as
    httpx honoured them. Looked up once per scheme and host: aiohttp's own ``trust_env``
    reads the environment and ~/.netrc on every request, two thirds of its CPU per POST."""
    parts = urlsplit(url)
    return _proxy_for(parts.scheme, parts.hostname or "")


@functools.lru_cache(maxsize=1024)
def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme)


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | dict[str, str] | None = None,
    total: float | None = None,
) -> Answer:
    """One request, its answer read whole. Redirects are answers, never followed: an API
    that redirects is misconfigured, and a redirect must not carry our token elsewhere.
    ``total`` replaces the session's timeouts for this request. Raises one of
    TRANSPORT_ERRORS when there is no answer."""
    pool = _lean.get(session)
    if (
        pool is not None
        and method in LEAN_METHODS
        and (data is None or isinstance(data, bytes))
        and env_proxy(url) is None
    ):
        async with asyncio.timeout(session.timeout.total if total is None else total):
            answer = await pool.request(method, url, data, headers, params)
        return Answer(answer.status, answer.headers, answer.body)
    timeout = session.timeout if total is None else aiohttp.ClientTimeout(total=total)
    async with session.request(
        method,
        url,
        params=params,
        headers=headers,
        data=data,
        allow_redirects=False,
        timeout=timeout,
        proxy=env_proxy(url),
    ) as resp:
        body = await resp.read()
        return Answer(resp.status, resp.headers, body)
