"""The relay as a real process (``python -m igbridge.relay serve``), for restart tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from igbridge.sandbox.server import free_port


class RelayProcess:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        *,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.serve_args = serve_args  # e.g. ("--delivery", "inline")
        self.port = port or free_port()
        self.admin_port = free_port()  # /healthz, /readyz, /metrics
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "igbridge.relay",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--admin-port",
                    str(self.admin_port),
                    *self.serve_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited: {self.log_path.read_text()[-2000:]}")
            try:
                # The admin port opens once the webhook port serves.
                if httpx.get(f"{self.admin_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("relay did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no chance to flush anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def all_running(relays: Sequence[RelayProcess]) -> Iterator[None]:
    """Every relay started; every one stopped afterwards, however the block ends (also
    when one of them fails to start)."""
    try:
        for relay in relays:
            relay.start()
        yield
    finally:
        for relay in relays:
            relay.stop()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (``serve`` delivers in a child)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found
