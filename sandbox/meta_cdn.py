"""The Meta media CDN simulator (lookaside.fbsbx.com's ``/ig_messaging_cdn/``).

URLs carry no file extension, like Meta's: the Content-Type header is the only truth.
Every request is counted per asset, with its method and whether it asked for a range,
so a test can show that checking a type downloaded no body.
Serve ``app`` over HTTPS (tls.py): the relay fetches media over HTTPS only.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .faults import FaultPlan, app_with_faults

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class CdnRequest(NamedTuple):
    method: str
    ranged: bool  # a Range header was sent


@dataclass
class Media:
    mime: str
    size: int = 2048
    expired: bool = False  # signed URLs stop working (stories after 24 h): 403
    requests: list[CdnRequest] = field(default_factory=list)
    bytes_served: int = 0  # body bytes sent, over all requests


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The inclusive (first, last) of a single ``bytes=`` range; None for the whole
    body (no header, or a form this CDN ignores); "unsatisfiable" for a 416."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:  # bytes=-N: the last N bytes
        count = int(last_s)
        return (max(0, size - count), size - 1) if count and size else "unsatisfiable"
    first = int(first_s)
    last = min(int(last_s), size - 1) if last_s else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, last


class MediaCDN:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.assets: dict[str, Media] = {}
        self.faults = FaultPlan()
        self.app: Starlette = app_with_faults(
            [
                # /ig_messaging_cdn/{id} and Meta's own /ig_messaging_cdn/?asset_id={id}
                Route("/ig_messaging_cdn/", self._serve, methods=["GET", "HEAD"]),
                Route("/ig_messaging_cdn/{asset_id}", self._serve, methods=["GET", "HEAD"]),
            ],
            self.faults,
        )

    def add(self, asset_id: str, mime: str, size: int = 2048, expired: bool = False) -> Media:
        media = Media(mime, size, expired)
        with self._lock:
            self.assets[asset_id] = media
        return media

    def expire(self, asset_id: str) -> None:
        with self._lock:
            self.assets[asset_id].expired = True

    async def _serve(self, request: Request) -> Response:
        asset = request.query_params.get("asset_id") or request.path_params.get("asset_id", "")
        range_header = request.headers.get("range")
        with self._lock:
            media = self.assets.get(asset)
            if media is not None:
                media.requests.append(CdnRequest(request.method, range_header is not None))
        if media is None:
            return Response("not found", status_code=404, media_type="text/plain")
        if media.expired:
            return Response("URL signature expired", status_code=403, media_type="text/plain")
        headers = {"Content-Type": media.mime, "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(media.size)
            return Response(status_code=200, headers=headers)
        wanted = byte_range(range_header, media.size)
        if wanted == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{media.size}"
            return Response(status_code=416, headers=headers)
        first, last = wanted if isinstance(wanted, tuple) else (0, media.size - 1)
        body = b"\0" * (last - first + 1)
        with self._lock:
            media.bytes_served += len(body)
        if isinstance(wanted, tuple):
            headers["Content-Range"] = f"bytes {first}-{last}/{media.size}"
            return Response(body, status_code=206, headers=headers)
        return Response(body, headers=headers)
