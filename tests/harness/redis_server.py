"""A real redis-server on loopback for tests and benchmarks: started, killed, restarted.

``scripts/setup`` installs redis-server; a machine without one fails these tests loudly
rather than skipping them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from igbridge.sandbox.server import free_port
from igbridge.sandbox.tls import TLSFiles, make_tls


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: run `bash scripts/setup` (it installs it)"
        )
    return found


class RedisServer:
    """One redis-server with append-only persistence fsynced on every write, the setting
    the relay asks for in production."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = password
        # TLS only (no plain port), with a throwaway CA that clients are told to trust.
        self.tls: TLSFiles | None = make_tls(data_dir / "tls") if tls else None
        self._proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return self.url_for(0)

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def url_for(self, db: int, password: str | None = None) -> str:
        """The URL of database ``db``, with this server's password (or ``password``)."""
        secret = password if password is not None else self.password
        auth = f":{quote(secret, safe='')}@" if secret is not None else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/{db}"
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}?ssl_ca_certs={quote(str(self.tls.ca))}"

    def start(self) -> RedisServer:
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password is not None:
            listen += ["--requirepass", self.password]
        self._proc = subprocess.Popen(
            [
                redis_binary(),
                "--bind", "127.0.0.1",
                *listen,
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited: {log}")
            try:
                if self._answers():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def _answers(self) -> bool:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        if self.tls is not None:  # the TLS socket takes over the plain one
            sock = self.tls.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            sock.sendall(b"PING\r\n")
            # With a password, the refusal to answer unauthenticated is an answer too.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does; only fsynced writes survive."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: a Redis that hangs (swapping, a long command), connections left open."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None

    def restart(self) -> None:
        self.kill()
        self.start()
