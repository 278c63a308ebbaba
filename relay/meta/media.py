"""Checking an attachment's MIME type without downloading it.

Meta forbids storing message media, and its CDN URLs carry no file extension, so the
relay asks the CDN: a HEAD, or when that is refused a one-byte ranged GET whose body is
never read. Only https URLs on an allow-list of Meta hosts (and port 443, unless an entry
names another) are contacted, redirects included, with a short timeout. The result says
what was found, verified or not; what the agent's platform makes of it (a picture, a
link) is decided by the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..http import Answer, env_proxy, fetch, new_session

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Types that say nothing about the media: a CDN's generic bytes, or the HTML error or
# login page served in place of an expired story or a private reel.
UNUSABLE_MIMES = frozenset({"application/octet-stream", "binary/octet-stream", "text/html"})


@dataclass(frozen=True, slots=True)
class MediaInfo:
    mime: str | None  # the CDN's Content-Type, when it could be verified
    verified: bool
    note: str  # the probe's outcome: a metric label ("verified", "not_allowed", "timeout", ...)


HTTPS_PORT = 443


def host_allowed(host: str, allowed: Iterable[str], port: int = HTTPS_PORT) -> bool:
    """Whether ``host`` on ``port`` is on the allow-list. An entry is a host name
    (``lookaside.fbsbx.com``) or a suffix (``*.fbcdn.net``), optionally with a port
    (``127.0.0.1:8443``); an entry without one allows only HTTPS's own port, so a redirect
    to another service on an allowed host (an admin port, a proxy) is not followed."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        parsed = allow_entry(entry)
        if parsed is None or parsed[1] != port:
            continue
        name = parsed[0]
        if name.startswith("*."):
            if host.endswith(name[1:]):
                return True
        elif host == name:
            return True
    return False


def allow_entry(entry: str) -> tuple[str, int] | None:
    """An allow-list entry's host (or ``*.suffix``) and port; None when it cannot be read
    (``[::1]:8443`` for an IPv6 address with a port)."""
    try:
        parts = urlsplit(f"//{entry.strip().lower()}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or "@" in parts.netloc or parts.netloc != entry.strip().lower():
        return None  # a path, a query or user info is not part of an entry
    return name, port or HTTPS_PORT


class MediaProber:
    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        timeout: float = 2.0,
        ca_file: Path | None = None,
    ) -> None:
        """Made inside a running event loop (it opens its session). ``ca_file``: trust
        only that CA (tests); else the system's store."""
        self._allowed = tuple(h.lower() for h in allowed_hosts)
        tls = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
        self._http = new_session(
            timeout=timeout,
            tls=tls,
            headers={"User-Agent": "igbridge-relay (media type check)"},
            abort_on_close=True,
        )
        # The session's timeout bounds one request; this bounds the whole check,
        # redirects and the ranged-GET fallback included, so a message is never held up.
        self._deadline = timeout * 2

    async def aclose(self) -> None:
        await self._http.close()

    def _checkable(self, url: str) -> str | None:
        """None when the URL may be contacted, else why not."""
        parts = urlsplit(url)
        if parts.scheme != "https":
            return "not_https"
        try:
            port = parts.port or HTTPS_PORT
        except ValueError:  # not a number, or past 65535
            return "not_allowed"
        if not parts.hostname or not host_allowed(parts.hostname, self._allowed, port):
            return "not_allowed"
        return None

    async def probe(self, url: str, declared_type: str) -> MediaInfo:
        """The attachment's MIME type, as the CDN gives it, when it can be checked.

        ``declared_type`` (the webhook's attachment type) is only logged. Never raises:
        an unverified type still lets the message through. ``note`` is the outcome
        ("verified", "not_allowed", "not_https", "timeout", "http_403", ...).
        """
        try:
            async with asyncio.timeout(self._deadline):
                mime, note = await self._probe(url)
        except TimeoutError:
            mime, note = None, "timeout"
        except aiohttp.ClientSSLError:  # an untrusted or invalid certificate, a TLS failure
            mime, note = None, "error:tls"
        except aiohttp.ClientConnectionError:  # refused, reset, unresolvable
            mime, note = None, "error:unreachable"
        except Exception as exc:  # a failed check must never drop the message
            mime, note = None, f"error:{type(exc).__name__}"
        if mime is None:
            # One per attachment: counted in igbridge_media_probes_total{outcome}, so the
            # line itself is for debugging only.
            log.debug(
                "media type unverified, the webhook's type will be used",
                extra={"outcome": note, "host": _host(url), "declared": declared_type[:40]},
            )
            return MediaInfo(None, False, note)
        return MediaInfo(mime, True, "verified")

    async def _probe(self, url: str) -> tuple[str | None, str]:
        for _ in range(MAX_REDIRECTS + 1):
            refused = self._checkable(url)
            if refused is not None:
                return None, refused
            resp = await fetch(self._http, "HEAD", url)
            if resp.status in (403, 405, 501) or (resp.ok and not _has_type(resp)):
                resp = await self._first_byte(url)
            location = resp.headers.get("location")
            if resp.status in REDIRECTS and location is not None:
                url = urljoin(url, location)
                continue
            if not resp.ok:
                return None, f"http_{resp.status}"
            if not _has_type(resp):
                return None, "no_content_type"
            mime = _content_type(resp)
            return (None, "unusable_type") if mime in UNUSABLE_MIMES else (mime, "verified")
        return None, "too_many_redirects"

    async def _first_byte(self, url: str) -> Answer:
        """Some CDNs refuse HEAD: ask for one byte and never read the body (leaving the
        block drops the connection unless the answer was complete)."""
        headers = {"Range": "bytes=0-0"}
        proxy = env_proxy(url)
        async with self._http.get(url, headers=headers, allow_redirects=False, proxy=proxy) as resp:
            return Answer(resp.status, resp.headers, b"")


def _content_type(resp: Answer) -> str:
    return resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _has_type(resp: Answer) -> bool:
    """False when the response names no type worth a second request (HEAD → ranged GET)."""
    mime = _content_type(resp)
    return "/" in mime and mime not in ("application/octet-stream", "binary/octet-stream")


def _host(url: str) -> str:
    """The URL's host for a log line: never its query, which carries the CDN signature."""
    try:
        return (urlsplit(url).hostname or "?")[:100]
    except ValueError:
        return "?"
