"""Two operator replicas, one Lease: only the holder acts, a standby takes over when the
holder is killed, and a holder that stops cleanly hands the Lease over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from igbridge.operator.leader import MIN_LEASE_SECONDS, LeaseTiming, parse_lease
from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import NAMESPACE, secrets_and_channel, status_of, wait_until
from tests.test_chart import by_kind, render, rules

LEASE_SECONDS = 7  # the shortest allowed: a takeover within about 10 s
# The chart with highAvailability on, installed in the namespace the tests use.
CHART = render({"highAvailability": {"enabled": True}}, namespace=NAMESPACE)
(LEASE_ARG,) = [
    a
    for a in by_kind(CHART, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    if a.startswith("--leader-lease=")
]
LEASE = LEASE_ARG.split("/")[-1]


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    log: Path
    liveness: str
    metrics: str

    def acquired(self) -> bool:
        text = self.log.read_text(errors="replace")
        if self.proc.poll() is not None and "acquired lease" not in text:
            raise AssertionError(f"the operator exited {self.proc.returncode}: {text[-2000:]}")
        return "acquired lease" in text


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


@contextmanager
def replica(cluster: Cluster, tmp_path: Path, name: str) -> Iterator[Replica]:
    """``igbridge-operator`` as the chart runs it with highAvailability on."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "IGBRIDGE_OPERATOR_METRICS_PORT": str(metrics_port),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-P", "-m", "igbridge.operator",
                "--namespace", NAMESPACE,
                LEASE_ARG,
                f"--lease-seconds={LEASE_SECONDS}",
                f"--liveness=http://127.0.0.1:{port}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield Replica(
                proc,
                log_path,
                f"http://127.0.0.1:{port}/healthz",
                f"http://127.0.0.1:{metrics_port}/metrics",
            )
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def holder(cluster: Cluster) -> str:
    lease = cluster.get("leases", NAMESPACE, LEASE) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def alive(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def leading(r: Replica) -> float | None:
    """``igbridge_operator_leader`` on the replica's /metrics; None: no answer."""
    try:
        text = httpx.get(r.metrics, timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "igbridge_operator_leader":
                return s.value
    return None


def create(sandbox: Sandbox, cluster: Cluster, name: str) -> None:
    for manifest in secrets_and_channel(sandbox, name=name):
        cluster.apply(manifest)


def test_one_replica_acts_and_the_standby_takes_over_when_it_is_killed(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(replica(cluster, tmp_path, "a"))
        b = stack.enter_context(replica(cluster, tmp_path, "b"))
        wait_until(lambda: a.acquired() or b.acquired(), what="a holder")
        active, standby = (a, b) if a.acquired() else (b, a)
        wait_until(lambda: alive(active.liveness) and alive(standby.liveness), what="probes")

        create(sandbox, cluster, "shop")
        wait_until(lambda: status_of(cluster, "Synced", "shop") == "True", what="shop Synced")
        assert len(sandbox.genesys.registry.created) == 1  # one integration, one actor
        assert not standby.acquired()
        # Not even a reconcile that found the integration by name: the standby ran nothing.
        wait_until(lambda: "reconcile_channel" in active.log.read_text(), what="handler logged")
        assert "reconcile_channel" not in standby.log.read_text()
        assert holder(cluster) != ""

        active.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        active.proc.wait(timeout=10)
        create(sandbox, cluster, "shop2")
        wait_until(
            lambda: status_of(cluster, "Synced", "shop2") == "True",
            timeout=LeaseTiming.of(LEASE_SECONDS).takeover_within + 30,
            what="shop2 Synced by the standby",
        )
        print(f"takeover: shop2 synced {time.monotonic() - killed_at:.1f}s after the kill")
        assert standby.acquired()
        assert standby.proc.poll() is None
        assert len(sandbox.genesys.registry.created) == 2
        assert status_of(cluster, "Synced", "shop") == "True"  # the first channel untouched


def test_a_holder_stopped_cleanly_hands_the_lease_over(
    sandbox: Sandbox, cluster: Cluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a = stack.enter_context(replica(cluster, tmp_path, "a"))
        wait_until(a.acquired, what="a holds the lease")
        first = holder(cluster)
        b = stack.enter_context(replica(cluster, tmp_path, "b"))
        wait_until(lambda: alive(b.liveness), what="the standby's probe")
        # Both are scraped; the gauge says which one acts.
        assert leading(b) == 0
        wait_until(lambda: leading(a) == 1, what="the holder's metrics")
        text = httpx.get(b.metrics, timeout=2).text
        assert "process_resident_memory_bytes" in text
        assert "python_info" in text
        a.proc.send_signal(signal.SIGTERM)  # what Kubernetes sends on a rolling update
        assert a.proc.wait(timeout=30) == 0
        assert "released lease" in a.log.read_text()
        wait_until(b.acquired, timeout=30, what="b holds the lease")
        wait_until(lambda: leading(b) == 1, what="b's metrics say it acts")
        assert holder(cluster) not in ("", first)
        create(sandbox, cluster, "shop")
        wait_until(lambda: status_of(cluster, "Synced", "shop") == "True", what="shop Synced")
        assert len(sandbox.genesys.registry.created) == 1
    # The chart grants exactly what the election used (create, renew, hand over).
    used = {(u.group, u.resource, u.verb) for u in cluster.emulator.uses if "lease" in u.resource}
    (role,) = [r for r in by_kind(CHART, "Role") if r["metadata"]["name"].endswith("-leader")]
    assert used == {(g, r, verb) for (g, r), verbs in rules(role).items() for verb in verbs}


@pytest.mark.parametrize("duration", [MIN_LEASE_SECONDS, 10, 15, 30, 60, 137, 600])
def test_a_holder_that_cannot_renew_exits_before_a_standby_may_take_over(
    duration: int,
) -> None:
    timing = LeaseTiming.of(duration)
    assert timing.holder_gives_up_after < timing.duration
    assert timing.retry >= 1  # the election library's floor
    assert timing.renew_deadline > 1.2 * timing.retry  # and its jitter rule


def test_the_default_lease_takes_over_within_20_seconds() -> None:
    timing = LeaseTiming.of(15)
    assert (timing.retry, timing.renew_deadline) == (2, 9)
    assert timing.takeover_within == 20  # what the README promises (plus kopf's start)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--lease-seconds=3", "--leader-lease=ns/x"], "too short"),
        (["--leader-lease=just-a-name"], "NAMESPACE/NAME"),
    ],
)
def test_bad_lease_flags_are_named(args: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.operator", "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert says in done.stderr


def test_parse_lease() -> None:
    assert parse_lease("igbridge/igbridge-operator") == ("igbridge", "igbridge-operator")
    for bad in ("", "/x", "x/", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            parse_lease(bad)


def test_the_cluster_refuses_a_write_over_a_newer_version(cluster: Cluster) -> None:
    """What the election relies on: of two candidates that read the same Lease, only the
    first write wins."""
    cluster.apply(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "race", "namespace": NAMESPACE},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 15},
        }
    )
    read = cluster.get("leases", NAMESPACE, "race") or {}
    for candidate, succeeds in (("a", True), ("b", False)):
        body = {**read, "spec": {**read["spec"], "holderIdentity": candidate}}
        done = cluster.kubectl(
            "replace", "--validate=false", "-f", "-", input_text=json.dumps(body)
        )
        assert (done.returncode == 0) is succeeds, done.stderr
    assert "modified" in done.stderr
    assert ((cluster.get("leases", NAMESPACE, "race") or {})["spec"])["holderIdentity"] == "a"


def test_a_holder_that_loses_the_lease_exits_at_once(cluster: Cluster, tmp_path: Path) -> None:
    with replica(cluster, tmp_path, "a") as a:
        wait_until(a.acquired, what="a holds the lease")
        # Another candidate took the Lease (as after a partition that outlasted it).
        for _ in range(10):
            read = cluster.get("leases", NAMESPACE, LEASE) or {}
            body = {
                **read,
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "spec": {**read["spec"], "holderIdentity": "intruder"},
            }
            done = cluster.kubectl(
                "replace", "--validate=false", "-f", "-", input_text=json.dumps(body)
            )
            if done.returncode == 0:
                break  # else a renewal came in between: read again
        assert done.returncode == 0, done.stderr
        assert a.proc.wait(timeout=LEASE_SECONDS * 4) == 1
        assert "lost lease" in a.log.read_text()
    assert holder(cluster) == "intruder"  # never written over
