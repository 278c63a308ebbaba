"""The relay on loopback in a background thread: its webhook port and its admin port
(``/healthz``, ``/readyz``, ``/metrics``) served from one event loop, as
``igbridge-relay serve`` serves them."""

from __future__ import annotations

import asyncio
import time

import uvicorn
from starlette.applications import Starlette

from igbridge.relay.web.listen import bind_socket
from igbridge.relay.web.server import RelayServer, serve_pair

from .server import LOOPBACK, ThreadedServer


class RelayThread(ThreadedServer):
    """``url``/``port``: the webhooks; ``admin_url``/``admin_port``: probes and metrics."""

    def __init__(self, app: Starlette, *, port: int = 0) -> None:
        # Bound here, so the ports are known (and taken) before the thread starts.
        self._web_socket = bind_socket(LOOPBACK, port)
        self._admin_socket = bind_socket(LOOPBACK, 0)
        super().__init__(app, port=self._web_socket.getsockname()[1])
        self.admin_port: int = self._admin_socket.getsockname()[1]
        self._web = RelayServer(self._server.config)
        self._server = self._web
        self._admin = RelayServer(
            uvicorn.Config(app.state.admin, log_level="warning", lifespan="off")
        )

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    def _run(self) -> None:
        try:
            asyncio.run(serve_pair(self._web, self._admin, self._web_socket, self._admin_socket))
        finally:
            self._web_socket.close()
            self._admin_socket.close()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._admin.started:  # the admin port opens after the webhook port
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"relay on port {self.port} did not start")
            time.sleep(0.01)
