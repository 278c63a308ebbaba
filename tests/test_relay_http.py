"""The relay's HTTP client on loopback: the environment's proxy, NO_PROXY, redirects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from igbridge.relay import http
from igbridge.relay.http import Answer, fetch, new_session
from igbridge.sandbox.server import ThreadedServer, free_port, serve_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ThreadedServer, list[tuple[str, str, str | None]]]]:
    """Answers anything; records (host header, path, Authorization) of what reached it."""
    seen: list[tuple[str, str, str | None]] = []

    async def anything(request: Request) -> Response:
        path = request.url.path
        seen.append((request.headers.get("host", ""), path, request.headers.get("authorization")))
        if path == "/moved":
            return RedirectResponse("/elsewhere", status_code=302)
        return JSONResponse({"path": path})

    app = Starlette(routes=[Route("/{rest:path}", anything, methods=["GET", "POST"])])
    with serve_in_thread(app) as running:
        yield running, seen


@pytest.fixture
def env_proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean proxy environment; proxies are looked up once per host, so forget them."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    http._proxy_for.cache_clear()
    yield monkeypatch
    http._proxy_for.cache_clear()


def get(url: str, **headers: str) -> Answer:
    async def main() -> Answer:
        async with new_session(timeout=5.0) as session:
            return await fetch(session, "GET", url, headers=headers)

    return asyncio.run(main())


def test_calls_go_through_the_environments_proxy(
    server: tuple[ThreadedServer, list[tuple[str, str, str | None]]],
    env_proxies: pytest.MonkeyPatch,
) -> None:
    proxy, seen = server
    env_proxies.setenv("HTTP_PROXY", proxy.url)
    answer = get("http://genesys.invalid/api/v2/x")  # resolvable only by the proxy
    assert answer.status == 200
    assert answer.json() == {"path": "/api/v2/x"}
    assert seen[-1][:2] == ("genesys.invalid", "/api/v2/x")


def test_no_proxy_hosts_are_called_directly(
    server: tuple[ThreadedServer, list[tuple[str, str, str | None]]],
    env_proxies: pytest.MonkeyPatch,
) -> None:
    target, seen = server
    env_proxies.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # a dead proxy
    env_proxies.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert get(f"{target.url}/direct").status == 200
    assert seen[-1][1] == "/direct"


def test_a_redirect_is_an_answer_and_the_token_goes_nowhere_else(
    server: tuple[ThreadedServer, list[tuple[str, str, str | None]]],
    env_proxies: pytest.MonkeyPatch,
) -> None:
    target, seen = server
    before = len(seen)
    answer = get(f"{target.url}/moved", Authorization="Bearer secret-token")
    assert answer.status == 302
    assert answer.headers["Location"] == "/elsewhere"
    assert [path for _, path, _ in seen[before:]] == ["/moved"]
