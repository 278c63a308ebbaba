"""Checking an attachment's MIME type without downloading it.

Meta forbids storing message media, and its CDN URLs carry no file extension, so the
relay asks the CDN: a HEAD, or when that is refused a one-byte ranged GET whose body is
never read. Only https URLs on an allow-list of Meta hosts are contacted, with a short
timeout; when a URL cannot be checked the type declared in the webhook decides.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from ..genesys.payloads import MediaType

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3

# Types that say nothing about the media: a CDN's generic bytes, or the HTML error or
# login page served in place of an expired story or a private reel.
UNUSABLE_MIMES = frozenset({"application/octet-stream", "binary/octet-stream", "text/html"})

# What the webhook's attachment type means when the URL cannot be checked.
DECLARED_MEDIA_TYPES: dict[str, MediaType] = {
    "image": "Image",
    "sticker": "Image",
    "video": "Video",
    "audio": "Audio",
    "file": "File",
    # A story mention's URL is the story's image or video; Image is the common case and
    # Genesys still shows a link when the story has expired.
    "story_mention": "Image",
}


@dataclass(frozen=True, slots=True)
class MediaInfo:
    media_type: MediaType
    mime: str | None
    verified: bool
    note: str  # the probe's outcome: a metric label ("verified", "not_allowed", "timeout", ...)


def media_type_for_mime(mime: str) -> MediaType:
    major = mime.split("/", 1)[0]
    if major == "image":
        return "Image"
    if major == "video":
        return "Video"
    if major == "audio":
        return "Audio"
    return "File"


def declared_media_type(declared: str) -> MediaType:
    return DECLARED_MEDIA_TYPES.get(declared, "Link")


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


class MediaProber:
    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        timeout: float = 2.0,
        ca_file: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allowed = tuple(h.lower() for h in allowed_hosts)
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            verify=verify,
            transport=transport,
            headers={"User-Agent": "igbridge-relay (media type check)"},
        )
        # httpx's timeout is per phase and per request; this bounds the whole check,
        # redirects and the ranged-GET fallback included, so a message is never held up.
        self._deadline = timeout * 2

    async def aclose(self) -> None:
        await self._http.aclose()

    def _checkable(self, url: str) -> str | None:
        """None when the URL may be contacted, else why not."""
        parts = urlsplit(url)
        if parts.scheme != "https":
            return "not_https"
        if not parts.hostname or not host_allowed(parts.hostname, self._allowed):
            return "not_allowed"
        return None

    async def probe(self, url: str, declared_type: str) -> MediaInfo:
        """The attachment's type: the CDN's when it can be checked, else the webhook's.

        Never raises: an unverified type still lets the message through. ``note`` is
        the outcome ("verified", "not_allowed", "not_https", "timeout", "http_403", ...).
        """
        try:
            async with asyncio.timeout(self._deadline):
                mime, note = await self._probe(url)
        except (httpx.TimeoutException, TimeoutError):
            mime, note = None, "timeout"
        except Exception as exc:  # a failed check must never drop the message
            mime, note = None, f"error:{type(exc).__name__}"
        if mime is None:
            log.info(
                "media type unverified, using the webhook's type",
                extra={"outcome": note, "host": _host(url), "declared": declared_type[:40]},
            )
            return MediaInfo(declared_media_type(declared_type), None, False, note)
        return MediaInfo(media_type_for_mime(mime), mime, True, "verified")

    async def _probe(self, url: str) -> tuple[str | None, str]:
        for _ in range(MAX_REDIRECTS + 1):
            refused = self._checkable(url)
            if refused is not None:
                return None, refused
            resp = await self._http.head(url)
            if resp.status_code in (403, 405, 501) or (resp.is_success and not _has_type(resp)):
                # Some CDNs refuse HEAD: ask for one byte and never read the body.
                async with self._http.stream("GET", url, headers={"Range": "bytes=0-0"}) as r:
                    resp = r
            if resp.is_redirect and "location" in resp.headers:
                url = urljoin(url, resp.headers["location"])
                continue
            if not resp.is_success:
                return None, f"http_{resp.status_code}"
            if not _has_type(resp):
                return None, "no_content_type"
            mime = _content_type(resp)
            return (None, "unusable_type") if mime in UNUSABLE_MIMES else (mime, "verified")
        return None, "too_many_redirects"


def _content_type(resp: httpx.Response) -> str:
    return str(resp.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def _has_type(resp: httpx.Response) -> bool:
    """False when the response names no type worth a second request (HEAD → ranged GET)."""
    mime = _content_type(resp)
    return "/" in mime and mime not in ("application/octet-stream", "binary/octet-stream")


def _host(url: str) -> str:
    """The URL's host for a log line: never its query, which carries the CDN signature."""
    try:
        return (urlsplit(url).hostname or "?")[:100]
    except ValueError:
        return "?"
