"""Media MIME checks against a real HTTPS server on loopback: what is contacted, and how;
and the Genesys media type the pipeline makes of what was found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from igbridge.relay.genesys.payloads import MediaType
from igbridge.relay.meta.media import MediaInfo, MediaProber, host_allowed
from igbridge.relay.pipeline.media_type import declared_media_type, media_type, media_type_for_mime
from igbridge.sandbox.server import ThreadedServer, serve_in_thread
from igbridge.sandbox.tls import TLSFiles, make_tls

# A second HTTPS server on the same host (set by the fixture): where "other-port" sends.
OTHER_PORT: list[int] = []
HUGE_BYTES = 64 * 1024 * 1024  # what /m/huge would send to a client that read its body
CHUNK = 64 * 1024


@dataclass
class Cdn:
    server: ThreadedServer
    tls: TLSFiles
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, range
    body_bytes: int = 0  # body bytes handed to the connection, over every request


def _app(cdn_ref: list[Cdn]) -> Starlette:
    async def huge_body() -> AsyncIterator[bytes]:
        chunk = b"\0" * CHUNK
        for _ in range(HUGE_BYTES // CHUNK):
            cdn_ref[0].body_bytes += len(chunk)
            yield chunk
            # uvicorn drops writes to a closed connection without suspending; yielding lets
            # Starlette's disconnect listener stop the stream, as a real CDN stops sending.
            await asyncio.sleep(0)

    async def handle(request: Request) -> Response:
        cdn = cdn_ref[0]
        name = request.path_params["name"]
        ranged = request.headers.get("range")
        cdn.seen.append((request.method, name, ranged))
        if name in ("no-head", "huge") and request.method == "HEAD":
            return Response(status_code=405)
        if name == "huge":  # a CDN that ignores Range: only closing early saves the download
            return StreamingResponse(huge_body(), media_type="video/mp4")
        if name == "slow":
            await asyncio.sleep(3)
        if name == "expired":
            return Response("expired", status_code=403)
        if name == "gone":
            return Response("not found", status_code=404)
        if name == "elsewhere":
            return RedirectResponse("https://evil.example.com/x.jpg", status_code=302)
        if name == "downgrade":
            return RedirectResponse(cdn.server.url.replace("https", "http") + "/m/photo", 302)
        if name == "other-port":  # the same host, another service on it
            return RedirectResponse(f"https://127.0.0.1:{OTHER_PORT[0]}/m/photo", 302)
        if name == "hop":
            return RedirectResponse(f"{cdn.server.url}/m/photo", status_code=302)
        if name == "loop":
            return RedirectResponse("/m/loop", status_code=302)
        if name == "page":  # a reel's web page, or a login wall
            return Response("<html></html>", media_type="text/html")
        if name == "untyped" and request.method == "HEAD":
            return Response(status_code=200)  # no Content-Type at all
        mime = {
            "photo": "image/jpeg",
            "clip": "video/mp4",
            "no-head": "audio/mpeg",
            "untyped": "image/png",
            "bytes": "application/octet-stream",
        }.get(name, "application/pdf")
        if request.method == "GET":
            payload = b"\0" if ranged == "bytes=0-0" else b"\0" * 50_000
            cdn.body_bytes += len(payload)
            return Response(payload, status_code=206 if len(payload) == 1 else 200, media_type=mime)
        return Response(status_code=200, headers={"Content-Type": mime, "Content-Length": "50000"})

    return Starlette(routes=[Route("/m/{name}", handle, methods=["GET", "HEAD"])])


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdn]:
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    ref: list[Cdn] = []
    other: list[Cdn] = []
    with (
        serve_in_thread(_app(ref), certfile=tls.cert, keyfile=tls.key) as server,
        serve_in_thread(_app(other), certfile=tls.cert, keyfile=tls.key) as elsewhere,
    ):
        ref.append(Cdn(server, tls))
        other.append(Cdn(elsewhere, tls))
        OTHER_PORT[:] = [elsewhere.port]
        yield ref[0]
        assert other[0].seen == [], "the server on the other port was contacted"


def probe(
    cdn: Cdn, url: str, declared: str, allowed: tuple[str, ...] | None = None
) -> tuple[MediaType, MediaInfo]:
    """What the check found, and the Genesys type the pipeline makes of it. Allowed by
    default: the CDN's host and port."""
    if allowed is None:
        allowed = (f"127.0.0.1:{cdn.server.port}",)

    async def go() -> MediaInfo:
        prober = MediaProber(allowed, timeout=1.0, ca_file=cdn.tls.ca)
        try:
            return await prober.probe(url, declared)
        finally:
            await prober.aclose()

    info = asyncio.run(go())
    return media_type(info, declared), info


def test_head_decides_the_type(cdn: Cdn) -> None:
    before = cdn.body_bytes
    info = probe(cdn, f"{cdn.server.url}/m/clip", "image")  # the webhook said image
    assert info == ("Video", MediaInfo("video/mp4", True, "verified"))
    assert cdn.seen[-1] == ("HEAD", "clip", None)
    assert cdn.body_bytes == before


def test_refused_head_falls_back_to_a_one_byte_ranged_get(cdn: Cdn) -> None:
    before = cdn.body_bytes
    info = probe(cdn, f"{cdn.server.url}/m/no-head", "audio")
    assert info == ("Audio", MediaInfo("audio/mpeg", True, "verified"))
    assert cdn.seen[-2:] == [("HEAD", "no-head", None), ("GET", "no-head", "bytes=0-0")]
    assert cdn.body_bytes - before <= 1


def test_head_without_a_content_type_falls_back_to_the_ranged_get(cdn: Cdn) -> None:
    info = probe(cdn, f"{cdn.server.url}/m/untyped", "file")
    assert info == ("Image", MediaInfo("image/png", True, "verified"))
    assert cdn.seen[-2:] == [("HEAD", "untyped", None), ("GET", "untyped", "bytes=0-0")]


def test_the_body_is_never_read_even_when_the_cdn_ignores_range(cdn: Cdn) -> None:
    before = cdn.body_bytes
    info = probe(cdn, f"{cdn.server.url}/m/huge", "image")
    assert info == ("Video", MediaInfo("video/mp4", True, "verified"))
    assert cdn.seen[-1] == ("GET", "huge", "bytes=0-0")
    # Only what socket buffers swallowed before the connection was closed, not 64 MB.
    assert cdn.body_bytes - before < HUGE_BYTES // 4


def test_redirects_are_followed_only_to_allowed_https_hosts(cdn: Cdn) -> None:
    assert probe(cdn, f"{cdn.server.url}/m/hop", "file") == (
        ("Image", MediaInfo("image/jpeg", True, "verified"))
    )
    assert cdn.seen[-2:] == [("HEAD", "hop", None), ("HEAD", "photo", None)]
    away = probe(cdn, f"{cdn.server.url}/m/elsewhere", "image")
    assert away == ("Image", MediaInfo(None, False, "not_allowed"))
    count = len(cdn.seen)
    downgraded = probe(cdn, f"{cdn.server.url}/m/downgrade", "video")
    assert downgraded == ("Video", MediaInfo(None, False, "not_https"))
    assert cdn.seen[count:] == [("HEAD", "downgrade", None)]  # the http:// hop was not taken


def test_an_allowed_host_is_contacted_only_on_the_port_its_entry_names(cdn: Cdn) -> None:
    count = len(cdn.seen)
    # An entry without a port allows HTTPS's own port (443) only: this CDN's port is not.
    photo = f"{cdn.server.url}/m/photo"
    assert probe(cdn, photo, "image", allowed=("127.0.0.1",)) == (
        ("Image", MediaInfo(None, False, "not_allowed"))
    )
    assert probe(cdn, photo, "image", allowed=("127.0.0.1:1",)) == (
        ("Image", MediaInfo(None, False, "not_allowed"))
    )
    assert len(cdn.seen) == count
    # A redirect to another port on the same host is not followed (the fixture checks the
    # server there saw nothing).
    moved = probe(cdn, f"{cdn.server.url}/m/other-port", "image")
    assert moved == ("Image", MediaInfo(None, False, "not_allowed"))
    assert cdn.seen[count:] == [("HEAD", "other-port", None)]


@pytest.mark.parametrize(
    ("host", "port", "entries", "allowed"),
    [
        ("lookaside.fbsbx.com", 443, ("lookaside.fbsbx.com",), True),
        ("lookaside.fbsbx.com", 8443, ("lookaside.fbsbx.com",), False),
        ("a.fbcdn.net", 8443, ("*.fbcdn.net:8443",), True),
        ("a.fbcdn.net", 443, ("*.fbcdn.net:8443",), False),
        ("::1", 8443, ("[::1]:8443",), True),
        ("127.0.0.1", 443, ("127.0.0.1:notaport", "u@127.0.0.1", "127.0.0.1/x"), False),
    ],
)
def test_allow_list_ports(host: str, port: int, entries: tuple[str, ...], allowed: bool) -> None:
    assert host_allowed(host, entries, port) is allowed


def test_redirect_chains_stop_after_three_hops(cdn: Cdn) -> None:
    count = len(cdn.seen)
    info = probe(cdn, f"{cdn.server.url}/m/loop", "image")
    assert info == ("Image", MediaInfo(None, False, "too_many_redirects"))
    assert cdn.seen[count:] == [("HEAD", "loop", None)] * 4  # the first request and 3 hops


def test_hosts_off_the_allow_list_and_plain_http_are_never_contacted(cdn: Cdn) -> None:
    count = len(cdn.seen)
    assert probe(cdn, f"{cdn.server.url}/m/photo", "video", allowed=("*.fbcdn.net",)) == (
        ("Video", MediaInfo(None, False, "not_allowed"))
    )
    plain = cdn.server.url.replace("https://", "http://")
    assert probe(cdn, f"{plain}/m/photo", "image") == ("Image", MediaInfo(None, False, "not_https"))
    assert probe(cdn, "not a url", "audio") == ("Audio", MediaInfo(None, False, "not_https"))
    assert len(cdn.seen) == count


def test_timeout_and_expired_story_fall_back_to_the_webhook_type(cdn: Cdn) -> None:
    # The server answers after 3 s; a 1 s client gives up first, so the outcome is "timeout".
    slow = probe(cdn, f"{cdn.server.url}/m/slow", "video")
    assert slow == ("Video", MediaInfo(None, False, "timeout"))
    expired = probe(cdn, f"{cdn.server.url}/m/expired", "story_mention")
    assert expired == ("Image", MediaInfo(None, False, "http_403"))
    assert cdn.seen[-2:] == [("HEAD", "expired", None), ("GET", "expired", "bytes=0-0")]
    assert probe(cdn, f"{cdn.server.url}/m/gone", "file") == (
        "File",
        MediaInfo(None, False, "http_404"),
    )


def test_types_that_say_nothing_fall_back_to_the_webhook_type(cdn: Cdn) -> None:
    page = probe(cdn, f"{cdn.server.url}/m/page", "ig_reel")
    assert page == ("Link", MediaInfo(None, False, "unusable_type"))
    octets = probe(cdn, f"{cdn.server.url}/m/bytes", "video")
    assert octets == ("Video", MediaInfo(None, False, "no_content_type"))
    assert cdn.seen[-2:] == [("HEAD", "bytes", None), ("GET", "bytes", "bytes=0-0")]


def test_a_certificate_from_an_unknown_ca_is_refused(cdn: Cdn) -> None:
    async def go() -> MediaInfo:
        # Trusts only the system CAs.
        prober = MediaProber((f"127.0.0.1:{cdn.server.port}",), timeout=1.0)
        try:
            return await prober.probe(f"{cdn.server.url}/m/photo", "image")
        finally:
            await prober.aclose()

    info = asyncio.run(go())
    assert (media_type(info, "image"), info) == (
        "Image",
        MediaInfo(None, False, "error:tls"),
    )


@pytest.mark.parametrize(
    ("mime", "media_type"),
    [
        ("image/webp", "Image"),
        ("video/quicktime", "Video"),
        ("audio/aac", "Audio"),
        ("application/pdf", "File"),
        ("text/plain", "File"),
    ],
)
def test_verified_mime_decides(mime: str, media_type: str) -> None:
    assert media_type_for_mime(mime) == media_type


@pytest.mark.parametrize(
    ("declared", "media_type"),
    [
        ("image", "Image"),
        ("video", "Video"),
        ("audio", "Audio"),
        ("file", "File"),
        ("story_mention", "Image"),
        ("share", "Link"),
        ("ig_reel", "Link"),
        ("reel", "Link"),
        ("ig_post", "Link"),
        ("template", "Link"),
        ("something_new", "Link"),
    ],
)
def test_declared_type_decides_when_unchecked(declared: str, media_type: str) -> None:
    assert declared_media_type(declared) == media_type


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("lookaside.fbsbx.com", True),
        ("scontent-ams2-1.cdninstagram.com", True),
        ("video.xx.fbcdn.net", True),
        ("fbcdn.net.evil.com", False),
        ("evilfbcdn.net", False),
        ("LOOKASIDE.FBSBX.COM", True),
        ("instagram.com", False),
    ],
)
def test_allow_list_matching(host: str, allowed: bool) -> None:
    from igbridge.relay.config import DEFAULT_MEDIA_HOSTS

    assert host_allowed(host, DEFAULT_MEDIA_HOSTS) is allowed
