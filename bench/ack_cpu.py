"""CPU time per webhook ack: the relay's web process next to a bare Starlette app.

Requests per second and latency say little on a shared, loaded machine; the CPU a process
spends per request is disturbed much less by what else runs. Both targets run as their
own processes on loopback: the bare app (``bench/bare_app.py`` under uvicorn) and
``igbridge-relay serve --delivery process`` with the sandbox's settings (its delivery
process delivers to the Genesys simulator meanwhile, and is not counted). wrk sends each
of ``--requests`` distinct signed webhooks once (``bench/ack_count.lua``) over
``--connections`` connections; the target's user+system CPU is read from ``/proc`` before
and after, split per thread for the relay (its event loop, the main thread, and the rest:
the SQLite threads). Runs alternate bare and relay; the medians are printed.

    bash scripts/setup && bash bench/setup
    .venv/bin/python -P bench/ack_cpu.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox, run_sandbox

# Appended, never prepended: the repository root has a folder named operator/ that must
# not shadow the standard library's module.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench.proc import thread_cpu
from bench.relay_bench import bare_server, code_env
from bench.wrk_ack import ensure_wrk, write_bodies
from tests.harness.process import RelayProcess

LUA = Path(__file__).with_name("ack_count.lua")


@dataclass(frozen=True)
class Run:
    requests: int
    non_2xx: int
    loop_us: float  # per request, in the main thread (the event loop)
    other_us: float  # per request, in every other thread (the relay's SQLite threads)

    @property
    def total_us(self) -> float:
        return self.loop_us + self.other_us


def drive(wrk: str, url: str, bodies: Path, pid: int, connections: int) -> Run:
    """Send every body in ``bodies`` once; the CPU ``pid`` spent meanwhile, per request."""
    command = [wrk, "-t1", f"-c{connections}", "-d300s", "--timeout", "10s", "-s", str(LUA)]
    before = thread_cpu(pid)
    with subprocess.Popen(  # noqa: S603 (wrk found on PATH, our arguments)
        [*command, url, "--", str(bodies), "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        # wrk runs on to its duration after the last answer; the script says when that was.
        for line in proc.stdout:
            if line.startswith("ACK_COUNT_DONE"):
                break
        after = thread_cpu(pid)
        proc.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        out, err = proc.communicate(timeout=30)
    summary = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary: {out}\n{err}")
    stats = json.loads(summary.removeprefix("WRK_JSON "))
    requests = int(stats["requests"])
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    loop = used.pop(pid, 0.0)
    return Run(
        requests,
        int(stats["non_2xx"]) + int(stats["socket_errors"]),
        loop / requests * 1e6,
        sum(used.values()) / requests * 1e6,
    )


def bodies_for(sb: Sandbox, tmp: Path, run: int, count: int, customers: int) -> Path:
    path = tmp / f"ack-{run}.txt"
    write_bodies(sb, path, f"cpu{run}_{time.time_ns()}", count, customers)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--customers", type=int, default=10000)
    args = parser.parse_args()
    wrk = ensure_wrk()
    print(f"load average before: {os.getloadavg()}")
    bare_runs: list[Run] = []
    relay_runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp_name, run_sandbox(Path(tmp_name)) as sb:
        tmp = Path(tmp_name)
        relay = RelayProcess(
            sb.relay_env(tmp / "ack.db", IGBRIDGE_LOG_LEVEL="WARNING", **code_env()),
            tmp / "relay.log",
            serve_args=("--delivery", "process"),
        )
        relay.start()
        bare_port = free_port()
        bare = bare_server(bare_port, tmp / "bare.log")
        try:
            assert relay.proc is not None
            for n in range(args.runs):
                bodies = bodies_for(sb, tmp, n, args.requests, args.customers)
                for label, url, pid, runs in (
                    (
                        "bare",
                        f"http://127.0.0.1:{bare_port}/webhooks/instagram",
                        bare.pid,
                        bare_runs,
                    ),
                    ("relay", f"{relay.url}/webhooks/instagram", relay.proc.pid, relay_runs),
                ):
                    run = drive(wrk, url, bodies, pid, args.connections)
                    runs.append(run)
                    print(
                        f"run {n + 1} {label:<5} {run.requests} requests ({run.non_2xx} failed): "
                        f"{run.total_us:.1f} µs CPU per request "
                        f"(event loop {run.loop_us:.1f}, other threads {run.other_us:.1f}); "
                        f"load {os.getloadavg()[0]:.2f}"
                    )
        finally:
            relay.stop()
            bare.terminate()
            bare.wait(timeout=10)
    bare_us = statistics.median(r.total_us for r in bare_runs)
    relay_us = statistics.median(r.total_us for r in relay_runs)
    loop_us = statistics.median(r.loop_us for r in relay_runs)
    other_us = statistics.median(r.other_us for r in relay_runs)
    print(f"load average after: {os.getloadavg()}")
    print(f"medians over {args.runs} runs of {args.requests} requests, {args.connections} conns:")
    print(f"  bare app          {bare_us:7.1f} µs CPU per request")
    print(
        f"  relay web process {relay_us:7.1f} µs CPU per ack "
        f"(event loop {loop_us:.1f}, database threads {other_us:.1f})"
    )
    print(f"  relay ÷ bare      {relay_us / bare_us:7.2f}")
    # Each run's bare and relay ran back to back, under much the same load: their ratio
    # moves less with the machine's load than either figure.
    ratios = [r.total_us / b.total_us for b, r in zip(bare_runs, relay_runs, strict=True)]
    print(f"  median of each run's relay ÷ bare {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
