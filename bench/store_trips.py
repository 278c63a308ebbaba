"""Redis round trips per delivered message, counted from outside the relay.

``redis-cli MONITOR`` prints every command Redis runs, those a client sent (``[0 addr]``)
and those a Lua script ran (``[0 lua]``). A client's MULTI … EXEC block is one round trip
(redis-py sends a transaction pipeline in one write); every other client command is one.
MONITOR slows Redis down, so the phase that counts is not the one that times.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Trips:
    round_trips: int = 0  # client requests, a MULTI … EXEC block counted once
    client_commands: Counter[str] = field(default_factory=Counter)
    script_commands: int = 0  # commands run inside Lua scripts (no network trip)


def count_monitor(lines: list[str], ignore_addr: str | None = None) -> Trips:
    trips = Trips()
    in_multi: set[str] = set()
    for line in lines:
        head, sep, rest = line.partition("] ")
        if not sep or " [" not in head:
            continue
        addr = head.rsplit(" ", 1)[-1]
        command = rest.split(" ", 1)[0].strip('"').upper()
        if addr == "lua":
            trips.script_commands += 1
            continue
        if addr == ignore_addr:
            continue
        trips.client_commands[command] += 1
        if command == "MULTI":
            in_multi.add(addr)
        elif command in ("EXEC", "DISCARD"):
            in_multi.discard(addr)
            trips.round_trips += 1
        elif addr not in in_multi:
            trips.round_trips += 1
    return trips


class Monitor:
    """``redis-cli -p PORT monitor`` writing to a file until stopped."""

    def __init__(self, port: int, out: Path) -> None:
        self._out = out
        with out.open("wb") as sink:
            self._proc = subprocess.Popen(  # noqa: S603 (redis-cli from PATH, our port)
                ["redis-cli", "-p", str(port), "monitor"],  # noqa: S607
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not out.read_bytes().startswith(b"OK") and time.monotonic() < deadline:
            time.sleep(0.02)  # redis-cli answers OK once it is monitoring

    def stop(self) -> list[str]:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        return self._out.read_text(errors="replace").splitlines()
