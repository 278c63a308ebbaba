from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.sandbox.stack import Sandbox, run_sandbox
from tests.harness.redis_server import RedisServer


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with run_sandbox(tmp_path) as sb:
        yield sb


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
