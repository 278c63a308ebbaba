"""The web process and its delivery process.

``igbridge-relay serve`` answers webhooks in one process and delivers in another, so a
burst of webhooks and the work of delivering them do not share one core and one event
loop: the ack path (signature, one JSON decode, one group-committed write) keeps its
latency however much delivery there is to do. Both open the same store; the web process
only enqueues, the delivery process claims.

One socket pair joins them, both ways, in short messages:
- web → delivery: one byte per stored webhook (``i``: an Instagram webhook, ``o``: an
  agent's message) so the delivery side looks now rather than at its next poll. Bytes
  that do not fit are dropped: a full socket already holds wake-ups enough.
- delivery → web: a JSON line per credentials change (``{"platform": …, "problem": …}``)
  for ``/readyz``.

The delivery process dies with the web process (it reads end-of-file on the socket and
exits at once: the leases it held run out, as after a crash); if the delivery process
dies, the web process stops too, so the pod restarts whole rather than acking webhooks
nobody delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

WAKE_INTAKE = b"i"
WAKE_OUTBOUND = b"o"
# The child's command line: ``python -m igbridge.relay deliver --link-fd N``.
DELIVER_COMMAND = "deliver"
# The folder both processes write their metric values to; prometheus_client reads this
# variable when it is imported, so ``serve`` sets it first (this module imports no
# prometheus_client for that reason).
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class DeliveryProcess:
    """The web process's side: starts the delivery process, wakes it, hears its health."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self._proc = proc
        self._sock = sock
        self.problems: dict[str, str] = {}
        self._reader: asyncio.Task[None] = asyncio.create_task(self._read(), name="delivery-link")
        self._watch: asyncio.Task[None] = asyncio.create_task(self._wait(), name="delivery-exit")
        self._stopping = False
        self._pending: set[bytes] = set()
        self.on_exit: Callable[[int], None] | None = None

    @classmethod
    async def spawn(cls) -> DeliveryProcess:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "igbridge.relay",
                DELIVER_COMMAND,
                "--link-fd",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        log.info("delivery process started", extra={"pid": proc.pid})
        return cls(proc, ours)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None

    def wake_intake(self) -> None:
        self._wake(WAKE_INTAKE)

    def wake_outbound(self) -> None:
        self._wake(WAKE_OUTBOUND)

    def _wake(self, byte: bytes) -> None:
        # One send per turn of the event loop: a group commit answers many webhooks at
        # once, and one wake-up covers them all.
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.add(byte)

    def _flush(self) -> None:
        message, self._pending = b"".join(sorted(self._pending)), set()
        with contextlib.suppress(BlockingIOError, OSError):
            self._sock.send(message)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        while True:
            try:
                chunk = await loop.sock_recv(self._sock, 4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._heard(line)

    def _heard(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            platform, problem = str(message["platform"]), message["problem"]
        except (ValueError, KeyError, TypeError):
            log.warning("delivery process sent an unreadable line")
            return
        if problem is None:
            self.problems.pop(platform, None)
        else:
            self.problems[platform] = str(problem)

    async def _wait(self) -> None:
        code = await self._proc.wait()
        if not self._stopping:
            log.error("delivery process exited unexpectedly", extra={"exit_code": code})
            if self.on_exit is not None:
                self.on_exit(code)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM: the delivery process hands back its jobs and exits; SIGKILL after
        ``grace`` seconds."""
        self._stopping = True
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._watch), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, self._watch, return_exceptions=True)
        self._sock.close()


class WebLink:
    """The delivery process's side: wake-ups in, health changes out."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(False)

    async def listen(self, on_intake: Callable[[], None], on_outbound: Callable[[], None]) -> None:
        """Until the web process is gone; then this process ends at once, like a crash:
        nothing it holds is lost (leases run out), and it must not outlive its parent."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                chunk = await loop.sock_recv(self._sock, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                log.error("web process gone: delivery process exits")
                logging.shutdown()
                os._exit(70)
            if WAKE_INTAKE in chunk:
                on_intake()
            if WAKE_OUTBOUND in chunk:
                on_outbound()

    def send_health(self, platform: str, problem: str | None) -> None:
        line = json.dumps({"platform": platform, "problem": problem}).encode() + b"\n"
        with contextlib.suppress(BlockingIOError, OSError):
            self._sock.send(line)

    def close(self) -> None:
        self._sock.close()
