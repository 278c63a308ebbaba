"""Refused credentials: the backoff, the token provider's cached refusal, the health record,
and the re-check task against the simulators over HTTP (driven tick by tick)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.relay.config import Settings, load_settings
from igbridge.relay.genesys.auth import TokenProvider
from igbridge.relay.genesys.errors import AuthError
from igbridge.relay.health import RelayHealth, recheck_delay, sqlite_disk_problem
from igbridge.relay.http import new_session
from igbridge.relay.meta.graph import GraphClient
from igbridge.relay.meta.send import SendClient
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.tasks.credentials import CredentialsWatch
from igbridge.sandbox.genesys_sim import GenesysSimulator
from igbridge.sandbox.meta_sim import MetaSimulator
from igbridge.sandbox.server import ThreadedServer, serve_in_thread

SECRET = "sandbox-client-secret"  # the simulator's default


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("refusals", "cap", "seconds"),
    [
        pytest.param(0, 300.0, 0.0, id="none-yet"),
        pytest.param(1, 300.0, 1.0, id="first"),
        pytest.param(2, 300.0, 2.0, id="second"),
        pytest.param(5, 300.0, 16.0, id="fifth"),
        pytest.param(9, 300.0, 256.0, id="ninth"),
        pytest.param(10, 300.0, 300.0, id="capped"),
        pytest.param(10_000, 300.0, 300.0, id="long-outage"),
        pytest.param(3, 2.0, 2.0, id="small-cap"),
    ],
)
def test_recheck_delay_doubles_from_a_second_up_to_the_cap(
    refusals: int, cap: float, seconds: float
) -> None:
    assert recheck_delay(refusals, cap=cap) == seconds


@pytest.fixture
def genesys() -> Iterator[tuple[GenesysSimulator, ThreadedServer]]:
    sim = GenesysSimulator(token_ttl=3600)
    with serve_in_thread(sim.app) as server:
        yield sim, server


def test_a_refused_client_is_not_asked_again_until_the_backoff_has_passed(
    genesys: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    sim, server = genesys
    sim.client_secret = "regenerated-at-genesys"

    async def main() -> list[int]:
        clock = Clock()
        seen = []
        async with new_session(timeout=5) as http:
            tokens = TokenProvider(http, server.url, "sandbox-client", SECRET, clock=clock)
            for _ in range(50):
                with pytest.raises(AuthError, match="IGBRIDGE_GENESYS_CLIENT_SECRET"):
                    await tokens.token()
            seen.append(sim.token_requests)  # 1: the first call asked, the rest were told
            assert tokens.seconds_until_retry() == 1.0
            clock.now += 1.0
            with pytest.raises(AuthError):
                await tokens.token()
            seen.append(sim.token_requests)  # 2: asked once the second had passed
            clock.now += 1.0  # the second refusal waits 2 s
            with pytest.raises(AuthError):
                await tokens.token()
            seen.append(sim.token_requests)
            sim.client_secret = SECRET  # fixed at Genesys: found at the next ask
            clock.now += 1.0
            assert await tokens.token()
            assert await tokens.token()
            seen.append(sim.token_requests)
            assert tokens.refused is None
        return seen

    assert asyncio.run(main()) == [1, 2, 2, 3]
    assert sim.token_grants == 1


def test_new_credentials_are_tried_at_once_even_during_a_backoff(
    genesys: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    sim, server = genesys

    async def main() -> None:
        async with new_session(timeout=5) as http:
            tokens = TokenProvider(http, server.url, "sandbox-client", "old", clock=Clock())
            with pytest.raises(AuthError):
                await tokens.token()
            assert tokens.set_credentials("sandbox-client", "old") is False
            assert tokens.set_credentials("sandbox-client", SECRET) is True
            assert await tokens.token()

    asyncio.run(main())
    assert (sim.token_requests, sim.token_grants) == (2, 1)


def test_health_logs_and_counts_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = RelayMetrics()
    health = RelayHealth(metrics.credentials_ok)

    def ok(platform: str) -> float | None:
        return metrics.registry.get_sample_value("igbridge_credentials_ok", {"platform": platform})

    assert (ok("genesys"), ok("instagram")) == (1.0, 1.0)
    with caplog.at_level(logging.INFO, logger="igbridge.relay.health"):
        health.genesys_auth_error = "Genesys refused the client credentials (HTTP 401)"
        health.genesys_auth_error = "Genesys refused the client credentials (HTTP 401)"
        health.meta_token_error = None
        assert health.problems() == {"genesys": "Genesys refused the client credentials (HTTP 401)"}
        assert (ok("genesys"), ok("instagram")) == (0.0, 1.0)
        health.genesys_auth_error = None
    lines = [(r.levelname, r.getMessage(), getattr(r, "platform", None)) for r in caplog.records]
    assert lines == [
        ("ERROR", "credentials refused: webhooks are still accepted and kept", "genesys"),
        ("INFO", "credentials work again", "genesys"),
    ]
    assert ok("genesys") == 1.0
    assert health.problems() == {}


def test_sqlite_disk_problem(tmp_path: Path) -> None:
    assert sqlite_disk_problem(f"sqlite:///{tmp_path}/r.db") is None
    missing = sqlite_disk_problem(f"sqlite:///{tmp_path}/gone/r.db")
    assert missing is not None
    assert "gone" in missing
    assert sqlite_disk_problem("redis://127.0.0.1:6379/0") is None  # Redis answers ping


# -- the re-check task -------------------------------------------------------------------------


@pytest.fixture
def meta() -> Iterator[tuple[MetaSimulator, ThreadedServer]]:
    sim = MetaSimulator()
    with serve_in_thread(sim.app) as server:
        yield sim, server


def settings_with_files(
    tmp_path: Path, meta_url: str, genesys_url: str, token: str, secret: str
) -> Settings:
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "secret").write_text(secret + "\n")
    return load_settings(
        {
            "IGBRIDGE_META_GRAPH_URL": meta_url,
            "IGBRIDGE_META_APP_SECRET": "sandbox-app-secret",
            "IGBRIDGE_META_VERIFY_TOKEN": "verify",
            "IGBRIDGE_META_ACCESS_TOKEN_FILE": str(tmp_path / "token"),
            "IGBRIDGE_INSTAGRAM_ACCOUNT_ID": "17841400000000001",
            "IGBRIDGE_GENESYS_API_URL": genesys_url,
            "IGBRIDGE_GENESYS_LOGIN_URL": genesys_url,
            "IGBRIDGE_GENESYS_CLIENT_ID": "sandbox-client",
            "IGBRIDGE_GENESYS_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
            "IGBRIDGE_GENESYS_INTEGRATION_ID": "sandbox-integration",
            "IGBRIDGE_GENESYS_WEBHOOK_SECRET": "0123456789abcdef-webhook",
        }
    )


def test_secrets_from_files_are_read_again_and_environment_ones_are_not(tmp_path: Path) -> None:
    settings = settings_with_files(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", "a", "b")
    (tmp_path / "token").write_text("rotated\n")
    assert settings.reread_secret("meta_access_token") == "rotated"
    assert settings.reread_secret("genesys_client_id") is None  # from the environment
    (tmp_path / "secret").unlink()  # mid-swap: keep what we have
    assert settings.reread_secret("genesys_client_secret") is None


def test_the_watch_paces_its_checks_and_takes_rotated_secrets_at_once(
    tmp_path: Path,
    meta: tuple[MetaSimulator, ThreadedServer],
    genesys: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    meta_sim, meta_server = meta
    genesys_sim, genesys_server = genesys
    meta_sim.add_token("page-token").valid = False  # revoked at Meta
    settings = settings_with_files(
        tmp_path, meta_server.url, genesys_server.url, "page-token", "wrong"
    )

    async def main() -> None:
        clock = Clock()
        health = RelayHealth()
        async with new_session(timeout=5) as http:
            tokens = TokenProvider(
                http, settings.genesys_login, "sandbox-client", "wrong", clock=clock
            )
            graph = GraphClient(settings.graph_base, "page-token")
            send = SendClient(graph.http, settings.graph_base, "page-token")
            watch = CredentialsWatch(settings, health, tokens, graph, send, clock=clock)
            try:
                await watch.check_genesys()
                await watch.check_instagram()
                assert set(health.problems()) == {"genesys", "instagram"}
                assert "code 190" in health.problems()["instagram"]
                for _ in range(20):  # ticks inside the backoff ask nobody
                    await watch.tick()
                assert (genesys_sim.token_requests, graph.lookups) == (1, 1)
                clock.now += 1.0
                await watch.tick()
                assert (genesys_sim.token_requests, graph.lookups) == (2, 2)
                meta_sim.tokens["page-token"].valid = True  # Meta takes it again
                clock.now += 2.0
                await watch.tick()
                assert set(health.problems()) == {"genesys"}
                (tmp_path / "secret").write_text(SECRET)  # the Secret was rotated
                await watch.tick()  # inside the backoff, but new credentials are asked at once
                assert health.problems() == {}
                assert genesys_sim.token_grants == 1
            finally:
                await graph.aclose()

    asyncio.run(main())


def test_a_rotated_instagram_token_is_used_for_sends_too(
    tmp_path: Path,
    meta: tuple[MetaSimulator, ThreadedServer],
    genesys: tuple[GenesysSimulator, ThreadedServer],
) -> None:
    meta_sim, meta_server = meta
    _, genesys_server = genesys
    settings = settings_with_files(
        tmp_path, meta_server.url, genesys_server.url, "expired-token", SECRET
    )

    async def main() -> None:
        clock = Clock()
        health = RelayHealth()
        async with new_session(timeout=5) as http:
            tokens = TokenProvider(http, settings.genesys_login, "sandbox-client", SECRET)
            graph = GraphClient(settings.graph_base, "expired-token")
            send = SendClient(graph.http, settings.graph_base, "expired-token")
            watch = CredentialsWatch(settings, health, tokens, graph, send, clock=clock)
            try:
                await watch.check_instagram()
                assert "instagram" in health.problems()
                (tmp_path / "token").write_text(meta_sim.access_token)
                await watch.tick()
                assert health.problems() == {}
                meta_sim.set_last_customer_message("4242", int(time.time() * 1000))
                await send.send({"recipient": {"id": "4242"}, "message": {"text": "back"}})
            finally:
                await graph.aclose()

    asyncio.run(main())
