"""How long this disk takes to make a small write durable: the floor under every ack the
relay gives (the webhook is on disk before the 200), and under its tail. Measured idle,
and beside a run (``Probe``): the relay's own writes lengthen the tail its acks wait on."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType


def fdatasync_ms(
    folder: Path,
    count: int = 2000,
    seconds: float = 5.0,
    pause: float = 0.0,
    stop: threading.Event | None = None,
) -> list[float]:
    """Append 512 bytes and fdatasync, ``count`` times, for at most ``seconds`` or until
    ``stop``, ``pause`` seconds apart: each one's ms."""
    path = folder / f"fdatasync-probe-{threading.get_ident()}"
    took: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        deadline = time.monotonic() + seconds
        block = os.urandom(512)
        while len(took) < count and time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                break
            os.write(fd, block)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append((time.perf_counter() - started) * 1000)
            if pause:
                time.sleep(pause)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return took


class Probe:
    """fdatasync every 10 ms on a thread for as long as the ``with`` block runs (at most
    ``seconds``): what the disk's tail is while something else writes."""

    def __init__(self, folder: Path, seconds: float = 120.0) -> None:
        self._stop = threading.Event()
        self.took: list[float] = []

        def run() -> None:
            self.took = fdatasync_ms(
                folder, count=100_000, seconds=seconds, pause=0.01, stop=self._stop
            )

        self._thread = threading.Thread(target=run, name="fdatasync-probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
