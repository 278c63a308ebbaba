"""Operator benchmark on the cluster emulator, on loopback (not part of the test suite).

    .venv/bin/python -P bench/operator_bench.py [--sizes 10,100,500] [--timeout 600]

For each N: N InstagramChannels are created at once and timed until every one is
``Ready=True``, with igbridge-operator as its own process against the KMock-based emulator
and the sandbox's Genesys and Meta simulators (one Open Messaging integration per
channel). Ready needs the relay pods' report in ``status.relay``; no relays run here, so
the bench plays their part: once a channel's Deployment exists it patches a heartbeat into
the status, as a pod does. Next to it, kopf running a no-op create handler
(``bench/noop_operator.py``) on N channels of the same CRD: the floor, what kopf itself
costs. Peak memory (VmHWM) of each operator process is read before it stops. The resync
timer is set long (600 s) so the figures measure the event-driven path, not a timer.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from igbridge.relay.channel_status import API_VERSION, PLURAL
from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox, run_sandbox

# tests/ holds the cluster emulator; appended, never prepended: the repository root has a
# folder named operator/ that must not shadow the standard library's module.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench.proc import cpu_seconds, peak_rss_mb
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import NAMESPACE, secrets_and_channel

CHANNELS = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"


@contextmanager
def operator_process(cluster: Cluster, command: list[str], log: Path) -> Iterator[int]:
    """Start an operator against the emulator; yield its pid once its liveness answers."""
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "IGBRIDGE_OPERATOR_RESYNC_SECONDS": "600",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our interpreter, our modules)
            [*command, "--liveness", f"http://127.0.0.1:{port}/healthz"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("operator did not start")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def channel_manifests(sb: Sandbox, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One shared pair of credential Secrets, and ``count`` channels that name them."""
    meta_secret, genesys_secret, template = secrets_and_channel(sb, name="bench")
    channels = []
    for n in range(count):
        channel = copy.deepcopy(template)
        channel["metadata"]["name"] = f"ch{n:04d}"
        channel["spec"]["publicUrl"] = f"https://ch{n:04d}.example.com/ig"
        channels.append(channel)
    return [meta_secret, genesys_secret], channels


def create_all(
    client: httpx.Client, secrets: list[dict[str, Any]], channels: list[dict[str, Any]]
) -> None:
    for secret in secrets:
        client.post(f"/api/v1/namespaces/{NAMESPACE}/secrets", json=secret).raise_for_status()
    for channel in channels:
        client.post(CHANNELS, json=channel).raise_for_status()


def items(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get(path).json().get("items") or []
    return listed


def ready(obj: dict[str, Any]) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


class RelayStandIn:
    """Plays the relay pods: a heartbeat into status.relay once a channel's Deployment
    exists (as the pod it runs would), then every few seconds like a real pod."""

    def __init__(self, url: str, interval: float) -> None:
        self._client = httpx.Client(base_url=url, timeout=30)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-stand-in", daemon=True)

    def __enter__(self) -> RelayStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._client.close()

    def _run(self) -> None:
        reported: dict[str, float] = {}
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            for deployment in items(self._client, DEPLOYMENTS):
                name = deployment["metadata"]["name"].removesuffix("-relay")
                if now - reported.get(name, -1e9) < 5:
                    continue
                beat = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                relay = {"lastHeartbeat": beat, "ready": True, "pod": f"{name}-relay-0"}
                body = {"status": {"relay": relay}}
                self._client.patch(
                    f"{CHANNELS}/{name}/status",
                    content=json.dumps(body),
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                reported[name] = now


def poll_interval(count: int) -> float:
    """Listing every channel is work for the emulator too: look less often when there are
    many, so the bench's own polling does not slow down what it measures."""
    return max(0.25, count / 250)


def wait_for_all(
    client: httpx.Client, count: int, done: Callable[[dict[str, Any]], bool], timeout: float
) -> None:
    """Return once every channel satisfies ``done``; raise past the timeout."""
    started = time.monotonic()
    finished = 0
    while time.monotonic() - started < timeout:
        finished = sum(1 for obj in items(client, CHANNELS) if done(obj))
        if finished >= count:
            return
        time.sleep(poll_interval(count))
    raise RuntimeError(f"only {finished} of {count} channels got there in {timeout:.0f}s")


@dataclass(frozen=True)
class Measured:
    seconds: float  # wall time from creating the channels to the last one done
    cpu: float  # the operator process's CPU seconds, start-up included
    peak_mb: float


def measure_igbridge(count: int, timeout: float, tmp: Path) -> Measured:
    for part in ("sandbox", "cluster"):
        (tmp / part).mkdir(parents=True, exist_ok=True)
    with run_sandbox(tmp / "sandbox") as sb, run_cluster(tmp / "cluster") as cluster:
        command = [sys.executable, "-P", "-m", "igbridge.operator", "--namespace", NAMESPACE]
        with (
            operator_process(cluster, command, tmp / "operator.log") as pid,
            httpx.Client(base_url=cluster.url, timeout=30) as client,
            RelayStandIn(cluster.url, poll_interval(count)),
        ):
            secrets, channels = channel_manifests(sb, count)
            started = time.monotonic()
            create_all(client, secrets, channels)
            wait_for_all(client, count, ready, timeout)
            return Measured(time.monotonic() - started, cpu_seconds(pid), peak_rss_mb(pid))


def measure_noop(count: int, timeout: float, tmp: Path) -> Measured:
    for part in ("sandbox", "cluster"):
        (tmp / part).mkdir(parents=True, exist_ok=True)
    with run_sandbox(tmp / "sandbox") as sb, run_cluster(tmp / "cluster") as cluster:
        noop = str(Path(__file__).with_name("noop_operator.py"))
        command = [
            sys.executable, "-P", "-m", "kopf", "run", noop,
            "--standalone", "--namespace", NAMESPACE,
        ]  # fmt: skip
        with (
            operator_process(cluster, command, tmp / "noop.log") as pid,
            httpx.Client(base_url=cluster.url, timeout=30) as client,
        ):
            secrets, channels = channel_manifests(sb, count)
            started = time.monotonic()
            create_all(client, secrets, channels)
            wait_for_all(client, count, lambda o: "noop" in (o.get("status") or {}), timeout)
            return Measured(time.monotonic() - started, cpu_seconds(pid), peak_rss_mb(pid))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep-logs", type=Path, help="copy the operators' logs here")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    for count in (int(n) for n in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            ours = measure_igbridge(count, args.timeout, Path(tmp) / "ours")
            floor = measure_noop(count, args.timeout, Path(tmp) / "noop")
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for name in ("ours/operator.log", "noop/noop.log"):
                    log = Path(tmp) / name
                    (args.keep_logs / f"{count}-{log.name}").write_bytes(log.read_bytes())
        rows.append(
            {
                "channels": count,
                "igbridge_seconds_to_all_ready": ours.seconds,
                "noop_kopf_seconds_to_all_handled": floor.seconds,
                "ratio": ours.seconds / floor.seconds,
                "igbridge_cpu_seconds": ours.cpu,
                "noop_kopf_cpu_seconds": floor.cpu,
                "igbridge_peak_rss_mb": ours.peak_mb,
                "noop_kopf_peak_rss_mb": floor.peak_mb,
            }
        )
        print(f"N={count}: igbridge {ours.seconds:.1f}s, no-op {floor.seconds:.1f}s", flush=True)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "operator_bench.json").write_text(json.dumps(rows, indent=2))
    header = ["channels", "igbridge s", "no-op s", "ratio", "igb CPU s", "no-op CPU s"]
    header += ["igbridge MB", "no-op MB"]
    print("".join(f"{h:>14}" for h in header))
    for row in rows:
        print("".join(f"{v:>14.1f}" if isinstance(v, float) else f"{v:>14}" for v in row.values()))


if __name__ == "__main__":
    main()
