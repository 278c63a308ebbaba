"""Run an ASGI app with uvicorn on a loopback port, in a background thread.

Used by the sandbox command, the tests and the benchmarks: every server binds to
127.0.0.1, on a free port unless one is given, optionally with TLS.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadedServer:
    """A uvicorn server on its own thread and event loop."""

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            app,
            host=LOOPBACK,
            port=self.port,
            log_level="warning",
            lifespan="auto",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


@contextmanager
def serve_in_thread(
    app: Any, *, port: int = 0, certfile: Path | None = None, keyfile: Path | None = None
) -> Iterator[ThreadedServer]:
    server = ThreadedServer(app, port=port, certfile=certfile, keyfile=keyfile)
    server.start()
    try:
        yield server
    finally:
        server.stop()
