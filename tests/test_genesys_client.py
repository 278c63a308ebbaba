"""The Genesys OAuth and Open Messaging client against the Genesys simulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.client import GenesysClient
from igbridge.relay.genesys.errors import AuthError, PermanentError, TransientError
from igbridge.relay.genesys.payloads import From, InboundChannel, InboundMessage
from igbridge.relay.genesys.rest import GenesysRest
from igbridge.relay.http import new_session
from igbridge.sandbox.faults import Fault
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.server import ThreadedServer, free_port, serve_in_thread

T = TypeVar("T")


@pytest.fixture
def sim() -> Iterator[tuple[GenesysSimulator, ThreadedServer]]:
    simulator = GenesysSimulator(token_ttl=3600)
    with serve_in_thread(simulator.app) as server:
        yield simulator, server


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def with_client(
    server: ThreadedServer,
    fn: Callable[[GenesysClient, Clock], Awaitable[T]],
    secret: str = "sandbox-client-secret",  # noqa: S107 (the simulator's default)
) -> T:
    async def main() -> T:
        clock = Clock()
        async with new_session(timeout=5) as http:
            tokens = TokenProvider(http, server.url, "sandbox-client", secret, clock=clock)
            client = GenesysClient(http, server.url, "sandbox-integration", tokens)
            return await fn(client, clock)

    return asyncio.run(main())


def message(mid: str, sender: str = "42") -> InboundMessage:
    return InboundMessage(
        channel=InboundChannel(
            message_id=mid, time="2026-01-01T10:00:00.000Z", from_=From(id=sender)
        ),
        text="hello ✨",
    )


def test_token_is_reused_then_refreshed_before_it_expires(
    sim: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    simulator, server = sim

    async def body(client: GenesysClient, clock: Clock) -> None:
        first = await client.tokens.token()
        assert await client.tokens.token() == first
        clock.now = 3600 - 301  # still outside the refresh margin
        assert await client.tokens.token() == first
        clock.now = 3600 - 299  # inside it: a new token before the old one dies
        assert await client.tokens.token() != first

    with_client(server, body)
    assert simulator.token_grants == 2


def test_bad_credentials_are_an_auth_error_without_the_secret(
    sim: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    _, server = sim

    async def body(client: GenesysClient, _: Clock) -> None:
        await client.tokens.token()

    with pytest.raises(AuthError) as info:
        with_client(server, body, secret="definitely-wrong")
    assert "definitely-wrong" not in str(info.value)
    assert "IGBRIDGE_GENESYS_CLIENT_SECRET" in str(info.value)


def test_conversation_id_is_prefetched_and_stable(
    sim: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    _, server = sim

    async def body(client: GenesysClient, _: Clock) -> tuple[str | None, str | None]:
        a = await client.send_inbound(message("m1"))
        b = await client.send_inbound(message("m2"))
        return a.conversation_id, b.conversation_id

    first, second = with_client(server, body)
    assert first is not None
    assert first == second


def test_errors_are_classified(sim: tuple[GenesysSimulator, ThreadedServer]) -> None:
    simulator, server = sim
    simulator.faults.add(Fault(status=429, retry_after=7, path_prefix="/api/"))
    simulator.faults.add(Fault(status=502, path_prefix="/api/"))

    async def body(client: GenesysClient, _: Clock) -> None:
        with pytest.raises(TransientError) as limited:
            await client.send_inbound(message("m1"))
        assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
        with pytest.raises(TransientError) as bad_gateway:
            await client.send_inbound(message("m1"))
        assert bad_gateway.value.status == 502
        with pytest.raises(PermanentError) as rejected:
            await client.send_inbound(message("m2", sender=""))  # Genesys answers 400
        assert rejected.value.status == 400
        assert "channel.from.id" in str(rejected.value)

    with_client(server, body)


def test_a_stalled_genesys_is_a_transient_timeout(
    sim: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    simulator, server = sim
    simulator.faults.add(Fault(delay=3.0, path_prefix="/api/"))

    async def main() -> TransientError:
        async with new_session(timeout=0.5) as http:
            tokens = TokenProvider(http, server.url, "sandbox-client", "sandbox-client-secret")
            client = GenesysClient(http, server.url, "sandbox-integration", tokens)
            with pytest.raises(TransientError) as stalled:
                await client.send_inbound(message("m1"))
            return stalled.value

    stalled = asyncio.run(main())
    assert str(stalled) == "Genesys timed out"
    assert (stalled.status, stalled.retry_after) == (None, None)


def test_an_unreachable_genesys_is_transient_and_names_no_secret(
    sim: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    _, server = sim
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens

    async def main() -> tuple[TransientError, TransientError]:
        async with new_session(timeout=2.0, connect=1.0) as http:
            lost = TokenProvider(http, nowhere, "sandbox-client", "never-logged-secret")
            with pytest.raises(TransientError) as token:
                await lost.token()
            # The login host answers, the API host does not (they are separate hosts).
            tokens = TokenProvider(http, server.url, "sandbox-client", "sandbox-client-secret")
            with pytest.raises(TransientError) as call:
                await GenesysRest(http, nowhere, tokens).request("GET", "/api/v2/anything")
            return token.value, call.value

    token, call = asyncio.run(main())
    assert str(token).startswith("token endpoint unreachable: ")
    assert str(call).startswith("Genesys unreachable: ")
    assert "never-logged-secret" not in str(token) + str(call)
