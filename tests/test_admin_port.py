"""The admin port's contract without a running relay: outside the app's lifetime (before
its start-up, from its shutdown on) the admin routes answer and say "not ready" instead
of failing, and ``serve`` refuses one port for both before starting anything."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from igbridge.relay.app import create_app
from igbridge.relay.config import load_settings
from igbridge.sandbox.stack import Sandbox


def answers(app: Any, *paths: str) -> dict[str, httpx.Response]:
    """GET each path from ``app`` in process, its lifespan not run."""

    async def get_all() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            return {path: await client.get(path) for path in paths}

    return asyncio.run(get_all())


def test_the_admin_routes_before_the_relay_has_started(sandbox: Sandbox, tmp_path: Path) -> None:
    app = create_app(load_settings(sandbox.relay_env(tmp_path / "r.db")))
    got = answers(app.state.admin, "/readyz", "/healthz", "/metrics", "/webhooks/instagram")
    assert got["/readyz"].status_code == 503
    assert got["/readyz"].json() == {
        "status": "not ready",
        "problems": {"relay": "starting or stopping"},
    }
    assert got["/healthz"].json() == {"status": "ok"}
    assert got["/metrics"].status_code == 200
    assert "igbridge_webhook_requests_total" in got["/metrics"].text
    assert got["/webhooks/instagram"].status_code == 404


def test_serve_refuses_the_same_port_for_webhooks_and_admin(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_ADMIN_PORT="18080"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "igbridge.relay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "18080",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == ("igbridge-relay: the admin port (18080) must differ from --port")
    assert not (tmp_path / "r.db").exists()  # refused before anything started
