"""Webhook ack throughput with wrk, a load generator in C that the targets cannot outrun.

A Python client tops out near 750 requests/s here, below what a bare Starlette app
serves, so its ratio relay/bare flattered the relay. wrk's Lua has no HMAC: the bodies
and their signatures are made here beforehand, one file per run, each body a DM with a
message id of its own (the relay drops a repeat as a duplicate before storing it) from
one of many customers; ``signed_webhooks.lua`` sends each of them once.

``bash bench/setup`` installs wrk (Debian's package).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.proc import cpu_seconds, machine_busy_seconds, tree_cpu_seconds
from igbridge.sandbox.meta_sim import encode_like_meta, sign_meta
from igbridge.sandbox.stack import Sandbox

LUA = Path(__file__).with_name("signed_webhooks.lua")
SETUP = Path(__file__).with_name("setup")


def ensure_wrk() -> str:
    """wrk's path, installing it through bench/setup when it is missing."""
    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(SETUP)], check=True)  # noqa: S603, S607 (our script)
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: run `bash bench/setup`")
    return found


def write_bodies(sb: Sandbox, path: Path, run: str, count: int, customers: int) -> None:
    """``count`` signed DMs, one per line: ``<signature> <body>``; ids unique per ``run``."""
    t0 = int(time.time() * 1000)
    with path.open("wb") as out:
        for i in range(count):
            message = {"mid": f"m_wrk_{run}_{i}", "text": f"wrk {run} {i} 🚀"}
            item = sb.meta.messaging(f"8{i % customers:06d}", message, ts_ms=t0 + i)
            raw = encode_like_meta(sb.meta.webhook([item]))
            assert b"\n" not in raw  # one request per line
            out.write(sign_meta(raw, sb.meta.app_secret).encode() + b" " + raw + b"\n")


@dataclass(frozen=True)
class WrkRun:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    wrapped: bool  # the run sent more requests than there were distinct bodies
    wrk_cpu_share: float  # wrk's CPU seconds per wall second (1.0 = one core)
    target_cpu_share: float  # the target process's, over the same time
    # Its children's (the relay's delivery process, delivering beside the acks).
    children_cpu_share: float
    machine_busy_cores: float  # every process's: what was left for the target


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    url: str,
    bodies: Path,
    *,
    threads: int,
    connections: int,
    seconds: int,
    target_pid: int,
) -> WrkRun:
    """One wrk run against the process ``target_pid`` (whose CPU use is measured too)."""
    target_before = cpu_seconds(target_pid)
    tree_before = tree_cpu_seconds(target_pid)
    # wrk is the only child waited for meanwhile: the children's CPU delta is wrk's own.
    wrk_before = cpu_of_children()
    machine_before = machine_busy_seconds()
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (wrk found on PATH, our arguments)
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            str(bodies),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    machine = machine_busy_seconds() - machine_before
    wrk_cpu = cpu_of_children() - wrk_before
    target_cpu_used = cpu_seconds(target_pid) - target_before
    children_cpu_used = tree_cpu_seconds(target_pid) - tree_before - target_cpu_used
    line = next(
        (x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")),
        None,
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")
    stats = json.loads(line.removeprefix("WRK_JSON "))
    return WrkRun(
        requests=int(stats["requests"]),
        requests_per_s=stats["requests"] / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        non_2xx=int(stats["non_2xx"]),
        socket_errors=int(stats["socket_errors"]),
        wrapped=bool(stats["wrapped"]),
        wrk_cpu_share=wrk_cpu / wall,
        target_cpu_share=target_cpu_used / (stats["duration_us"] / 1e6),
        children_cpu_share=children_cpu_used / (stats["duration_us"] / 1e6),
        machine_busy_cores=machine / wall,
    )
