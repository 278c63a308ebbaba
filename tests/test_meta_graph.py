"""The Graph client against a small Graph API on loopback: profiles, caching, mentions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from igbridge.relay.http import Answer, fetch, new_session
from igbridge.relay.meta.graph import (
    PROFILE_FIELDS,
    GraphClient,
    GraphError,
    MentionedComment,
    Profile,
    TTLCache,
)
from igbridge.sandbox.server import ThreadedServer, free_port, serve_in_thread

TOKEN = "EAAG-test-page-token-never-logged"
ACCOUNT = "17841400000000001"
CUSTOMER = "6915500000000001"
SHY_CUSTOMER = "6915500000000002"  # a profile with name and picture hidden (null)
MENTION_FIELDS = "mentioned_comment.comment_id(17850000000000099){id,text,timestamp,username}"

T = TypeVar("T")


@dataclass
class Graph:
    """What the test Graph API serves, and what it was asked."""

    server: ThreadedServer | None = None
    broken: bool = False  # answer every request with a Graph 500 error
    slow: bool = False
    requests: list[tuple[str, dict[str, str], str | None]] = field(default_factory=list)

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/v21.0"


def _error(status: int, code: int, message: str, subcode: int | None = None) -> JSONResponse:
    err: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        err["error_subcode"] = subcode
    err["fbtrace_id"] = "AbCdEf"
    return JSONResponse({"error": err}, status_code=status)


PROFILES: dict[str, dict[str, Any]] = {
    CUSTOMER: {
        "name": "Ana Lima",
        "username": "ana.customer",
        "profile_pic": "https://scontent.cdninstagram.com/v/t51/ana.jpg?oh=1",
        "follower_count": 1520,
        "is_user_follow_business": True,
        "is_business_follow_user": False,
        "is_verified_user": False,
    },
    SHY_CUSTOMER: {
        "name": None,
        "username": "quiet_one",
        "profile_pic": None,
        "follower_count": 0,
        "is_user_follow_business": False,
        "is_business_follow_user": False,
        "is_verified_user": False,
    },
}


def _app(graph: Graph) -> Starlette:
    async def node(request: Request) -> Response:
        node_id = request.path_params["node"]
        params = dict(request.query_params)
        graph.requests.append((node_id, params, request.headers.get("authorization")))
        if graph.slow:
            await asyncio.sleep(2)
        if graph.broken:
            return _error(500, 2, "An unexpected error has occurred. Please retry your request.")
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        fields = params.get("fields", "")
        if node_id == ACCOUNT:
            if fields != MENTION_FIELDS:
                return _error(400, 100, "(#100) Tried accessing nonexisting field", 33)
            comment = {
                "id": "17850000000000099",
                "text": "@ourbrand is the best 🔥",
                "timestamp": "2026-01-01T10:00:00+0000",
                "username": "fan_account",
            }
            return JSONResponse({"mentioned_comment": comment, "id": ACCOUNT})
        profile = PROFILES.get(node_id)
        if profile is None:
            msg = f"Unsupported get request. Object with ID '{node_id}' does not exist"
            return _error(400, 100, msg, 33)
        wanted = fields.split(",")
        return JSONResponse({**{k: profile[k] for k in wanted if k in profile}, "id": node_id})

    return Starlette(routes=[Route("/v21.0/{node}", node)])


@pytest.fixture(scope="module")
def graph_server() -> Iterator[Graph]:
    graph = Graph()
    with serve_in_thread(_app(graph)) as server:
        graph.server = server
        yield graph


@pytest.fixture
def graph(graph_server: Graph) -> Graph:
    graph_server.broken = graph_server.slow = False
    graph_server.requests.clear()
    return graph_server


class FakeClock:
    """Monotonic time the test moves by hand, so cache expiry is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(graph: Graph, use: Callable[[GraphClient], Awaitable[T]], **kwargs: Any) -> T:
    async def go() -> T:
        client = GraphClient(graph.base, TOKEN, **kwargs)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_profile_fields_are_read_with_the_token_in_a_header(graph: Graph) -> None:
    profile = run(graph, lambda c: c.get_profile(CUSTOMER))
    assert profile == Profile(
        igsid=CUSTOMER,
        username="ana.customer",
        name="Ana Lima",
        profile_pic="https://scontent.cdninstagram.com/v/t51/ana.jpg?oh=1",
        follower_count=1520,
        is_user_follow_business=True,
        is_business_follow_user=False,
        is_verified_user=False,
    )
    [(node, params, auth)] = graph.requests
    assert node == CUSTOMER
    assert params == {"fields": PROFILE_FIELDS}  # the token never travels in the URL
    assert auth == f"Bearer {TOKEN}"
    assert PROFILE_FIELDS.split(",") == [
        "name",
        "username",
        "profile_pic",
        "follower_count",
        "is_user_follow_business",
        "is_business_follow_user",
        "is_verified_user",
    ]


def test_hidden_name_and_picture_stay_unknown(graph: Graph) -> None:
    profile = run(graph, lambda c: c.get_profile(SHY_CUSTOMER))
    assert profile is not None
    assert (profile.username, profile.name, profile.profile_pic) == ("quiet_one", None, None)
    assert profile.follower_count == 0


def test_a_cached_profile_is_not_asked_for_again_until_it_expires(graph: Graph) -> None:
    clock = FakeClock()

    async def use(client: GraphClient) -> list[Profile | None]:
        first = await client.get_profile(CUSTOMER)
        clock.now += 3599
        second = await client.get_profile(CUSTOMER)
        asked_before_expiry = len(graph.requests)
        clock.now += 2
        third = await client.get_profile(CUSTOMER)
        assert asked_before_expiry == 1
        return [first, second, third]

    profiles = run(graph, use, clock=clock)
    assert profiles[0] is not None
    assert profiles[0] == profiles[1] == profiles[2]
    assert len(graph.requests) == 2
    assert run(graph, lambda c: c.get_profile(CUSTOMER), clock=clock) is not None
    assert len(graph.requests) == 3  # the cache belongs to one client


def test_a_broken_graph_is_not_hammered_and_recovery_is_noticed(
    graph: Graph, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()

    async def use(client: GraphClient) -> list[Profile | None]:
        graph.broken = True
        results = [await client.get_profile(CUSTOMER) for _ in range(5)]
        assert len(graph.requests) == 1  # the failure is remembered for a minute
        graph.broken = False
        clock.now += 30
        results.append(await client.get_profile(CUSTOMER))
        assert len(graph.requests) == 1
        clock.now += 31
        results.append(await client.get_profile(CUSTOMER))
        return results

    with caplog.at_level(logging.INFO, logger="igbridge.relay.meta.graph"):
        results = run(graph, use, clock=clock)
    assert results[:6] == [None] * 6
    assert results[6] is not None
    assert results[6].username == "ana.customer"
    assert len(graph.requests) == 2
    failures = [r for r in caplog.records if r.getMessage() == "profile lookup failed"]
    assert len(failures) == 1
    assert getattr(failures[0], "code", None) == 2
    assert all(TOKEN not in r.getMessage() + str(r.__dict__) for r in caplog.records)


def test_unknown_user_slow_graph_and_unreachable_graph_give_none(graph: Graph) -> None:
    assert run(graph, lambda c: c.get_profile("404404")) is None
    graph.slow = True
    assert run(graph, lambda c: c.get_profile(CUSTOMER), timeout=0.3) is None
    graph.slow = False

    async def closed_port() -> Profile | None:
        client = GraphClient(f"http://127.0.0.1:{free_port()}/v21.0", TOKEN, timeout=1.0)
        try:
            return await client.get_profile(CUSTOMER)
        finally:
            await client.aclose()

    assert asyncio.run(closed_port()) is None


def test_a_refused_token_gives_none(graph: Graph) -> None:
    async def go() -> Profile | None:
        client = GraphClient(graph.base, "wrong-token")
        try:
            return await client.get_profile(CUSTOMER)
        finally:
            await client.aclose()

    assert asyncio.run(go()) is None
    assert graph.requests[-1][2] == "Bearer wrong-token"


def test_mentioned_comment_lookup(graph: Graph) -> None:
    found = run(graph, lambda c: c.get_mentioned_comment(ACCOUNT, "17850000000000099"))
    assert found == MentionedComment("17850000000000099", "@ourbrand is the best 🔥", "fan_account")
    [(node, params, _)] = graph.requests
    assert (node, params) == (ACCOUNT, {"fields": MENTION_FIELDS})
    # The simulated Graph knows only that comment: any other lookup is an error → None.
    assert run(graph, lambda c: c.get_mentioned_comment(ACCOUNT, "1")) is None
    graph.broken = True
    assert run(graph, lambda c: c.get_mentioned_comment(ACCOUNT, "17850000000000099")) is None


def test_graph_errors_are_parsed_from_real_responses(graph: Graph) -> None:
    async def get(url: str, token: str) -> Answer:
        async with new_session(timeout=5) as http:
            return await fetch(http, "GET", url, headers={"Authorization": f"Bearer {token}"})

    unknown = asyncio.run(get(f"{graph.base}/404404", TOKEN))
    assert GraphError.from_response(unknown) == GraphError(
        400, 100, 33, "Unsupported get request. Object with ID '404404' does not exist"
    )
    refused = asyncio.run(get(f"{graph.base}/{CUSTOMER}", "bad"))
    assert GraphError.from_response(refused) == GraphError(
        400, 190, None, "Invalid OAuth access token - Cannot parse access token"
    )
    gateway = Answer(502, CIMultiDictProxy(CIMultiDict()), b"<html>bad gateway</html>")
    assert GraphError.from_response(gateway) == GraphError(502, None, None, "HTTP 502")


def test_ttl_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    clock = FakeClock()
    cache: TTLCache[str, int] = TTLCache(2, clock)
    cache.put("a", 1, ttl=10)
    cache.put("b", 2, ttl=10)
    assert cache.get("a") == (True, 1)  # "a" is now the most recently used
    cache.put("c", 3, ttl=10)
    assert cache.get("b") == (False, None)
    assert cache.get("a") == (True, 1)
    assert cache.get("c") == (True, 3)
    clock.now += 10.5
    assert cache.get("a") == (False, None)
