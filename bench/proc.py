"""What the benchmarks read about a process from /proc: CPU time and peak memory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tests.harness.process import children


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its children (``serve`` delivers in a child)."""
    total = cpu_seconds(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):  # exited between the listing and the read
            total += cpu_seconds(child)
    return total


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each of the process's threads, by thread id."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread ended between listing and reading
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def relay_split(pid: int) -> dict[str, float]:
    """The relay's CPU seconds by where they went: each process's event loop (its main
    thread) and its other threads (SQLite's), the web process (``pid``) and its children
    (``serve``'s delivery process)."""
    split: dict[str, float] = {}
    for name, proc in [("web", pid)] + [("delivery", c) for c in children(pid)]:
        with contextlib.suppress(OSError):
            for tid, seconds in thread_cpu(proc).items():
                key = f"{name}_{'loop' if tid == proc else 'threads'}"
                split[key] = split.get(key, 0.0) + seconds
    return split


def written_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage so far (``write_bytes`` of
    /proc/<pid>/io, counted when it dirties the page, so a later writeback is included)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def relay_written(pid: int) -> dict[str, int]:
    """Bytes written to storage so far by the web process (``pid``) and by its children
    (``serve``'s delivery process)."""
    written = {"web": written_bytes(pid), "delivery": 0}
    for child in children(pid):
        with contextlib.suppress(OSError):
            written["delivery"] += written_bytes(child)
    return written


def tree_peak_rss_mb(pid: int) -> float:
    return peak_rss_mb(pid) + sum(peak_rss_mb(child) for child in children(pid))


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
