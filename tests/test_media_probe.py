"""Media MIME checks against a real HTTPS server on loopback: what is contacted, and how."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from igbridge.relay.meta.media import MediaInfo, MediaProber, host_allowed
from igbridge.relay.sandbox.server import ThreadedServer, serve_in_thread
from igbridge.relay.sandbox.tls import TLSFiles, make_tls


@dataclass
class Cdn:
    server: ThreadedServer
    tls: TLSFiles
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, range
    body_bytes: int = 0


def _app(cdn_ref: list[Cdn]) -> Starlette:
    async def handle(request: Request) -> Response:
        cdn = cdn_ref[0]
        name = request.path_params["name"]
        cdn.seen.append((request.method, name, request.headers.get("range")))
        if name == "no-head" and request.method == "HEAD":
            return Response(status_code=405)
        if name == "slow":
            await asyncio.sleep(3)
        if name == "expired":
            return Response("expired", status_code=403)
        if name == "elsewhere":
            return RedirectResponse("https://evil.example.com/x.jpg", status_code=302)
        if name == "hop":
            return RedirectResponse(f"{cdn.server.url}/m/photo", status_code=302)
        mime = {"photo": "image/jpeg", "clip": "video/mp4", "no-head": "audio/mpeg"}.get(
            name, "application/pdf"
        )
        if request.method == "GET":
            payload = b"\0" if request.headers.get("range") == "bytes=0-0" else b"\0" * 50_000
            cdn.body_bytes += len(payload)
            return Response(payload, status_code=206 if len(payload) == 1 else 200, media_type=mime)
        return Response(status_code=200, headers={"Content-Type": mime, "Content-Length": "50000"})

    return Starlette(routes=[Route("/m/{name}", handle, methods=["GET", "HEAD"])])


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdn]:
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    ref: list[Cdn] = []
    with serve_in_thread(_app(ref), certfile=tls.cert, keyfile=tls.key) as server:
        ref.append(Cdn(server, tls))
        yield ref[0]


def probe(
    cdn: Cdn, url: str, declared: str, allowed: tuple[str, ...] = ("127.0.0.1",)
) -> MediaInfo:
    async def go() -> MediaInfo:
        prober = MediaProber(allowed, timeout=1.0, ca_file=cdn.tls.ca)
        try:
            return await prober.probe(url, declared)
        finally:
            await prober.aclose()

    return asyncio.run(go())


def test_head_decides_the_type(cdn: Cdn) -> None:
    before = cdn.body_bytes
    info = probe(cdn, f"{cdn.server.url}/m/clip", "image")  # the webhook said image
    assert info == MediaInfo("Video", "video/mp4", True, "verified")
    assert cdn.seen[-1] == ("HEAD", "clip", None)
    assert cdn.body_bytes == before


def test_refused_head_falls_back_to_a_one_byte_ranged_get(cdn: Cdn) -> None:
    before = cdn.body_bytes
    info = probe(cdn, f"{cdn.server.url}/m/no-head", "audio")
    assert info.media_type == "Audio"
    assert info.mime == "audio/mpeg"
    assert cdn.seen[-2:] == [("HEAD", "no-head", None), ("GET", "no-head", "bytes=0-0")]
    assert cdn.body_bytes - before <= 1


def test_redirects_are_followed_only_to_allowed_hosts(cdn: Cdn) -> None:
    assert probe(cdn, f"{cdn.server.url}/m/hop", "file").mime == "image/jpeg"
    away = probe(cdn, f"{cdn.server.url}/m/elsewhere", "image")
    assert away == MediaInfo("Image", None, False, "not_allowed")


def test_hosts_off_the_allow_list_and_plain_http_are_never_contacted(cdn: Cdn) -> None:
    count = len(cdn.seen)
    assert probe(cdn, f"{cdn.server.url}/m/photo", "video", allowed=("*.fbcdn.net",)).note == (
        "not_allowed"
    )
    plain = cdn.server.url.replace("https://", "http://")
    assert probe(cdn, f"{plain}/m/photo", "image") == MediaInfo("Image", None, False, "not_https")
    assert len(cdn.seen) == count


def test_timeout_and_expired_story_fall_back_to_the_webhook_type(cdn: Cdn) -> None:
    started = time.monotonic()
    slow = probe(cdn, f"{cdn.server.url}/m/slow", "video")
    assert slow == MediaInfo("Video", None, False, "timeout")
    assert time.monotonic() - started < 2.9  # did not wait for the server's 3 s
    expired = probe(cdn, f"{cdn.server.url}/m/expired", "story_mention")
    assert expired == MediaInfo("Image", None, False, "http_403")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("lookaside.fbsbx.com", True),
        ("scontent-ams2-1.cdninstagram.com", True),
        ("video.xx.fbcdn.net", True),
        ("fbcdn.net.evil.com", False),
        ("evilfbcdn.net", False),
        ("LOOKASIDE.FBSBX.COM", True),
    ],
)
def test_allow_list_matching(host: str, allowed: bool) -> None:
    from igbridge.relay.config import DEFAULT_MEDIA_HOSTS

    assert host_allowed(host, DEFAULT_MEDIA_HOSTS) is allowed
