"""``igbridge-relay serve`` as two processes: the web process answers webhooks, its child
delivers. What an operator checks: one /metrics and one /readyz tell about both, on the
admin port and not on the webhook one, and neither process outlives the other."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess, children


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, waiting for its parent to reap it


def wait_until(check: object, seconds: float = 15.0) -> bool:
    for _ in range(int(seconds / 0.05)):  # bounded
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def metric(url: str, name: str, labels: str = "") -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{{labels}}} " if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_serve_delivers_from_a_second_process_and_reports_both(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    relay.start()
    try:
        assert relay.proc is not None
        (child,) = children(relay.proc.pid)
        body = sandbox.meta.webhook([sandbox.meta.messaging("7001", {"text": "olá 👋🏽"})])
        resp = sandbox.meta.deliver_webhook(f"{relay.url}/webhooks/instagram", body)
        assert resp.status_code == 200
        (msg,) = sandbox.genesys.wait_for_messages(1)
        assert msg.text == "olá 👋🏽"
        # Counted by the delivery process, shown by the web process's /metrics.
        assert wait_until(
            lambda: metric(relay.admin_url, "igbridge_delivered_total", 'queue="inbound"') == 1
        )
        ack = 'route="/webhooks/instagram",status="200"'
        assert metric(relay.admin_url, "igbridge_webhook_requests_total", ack) == 1
    finally:
        relay.stop()
    assert wait_until(lambda: gone(child))


def test_readyz_names_the_credential_problems_the_delivery_process_found(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = sandbox.relay_env(tmp_path / "r.db", IGBRIDGE_GENESYS_CLIENT_SECRET="wrong-secret-y")
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    try:
        ready = f"{relay.admin_url}/readyz"
        assert wait_until(lambda: "genesys" in httpx.get(ready).json().get("problems", {}))
        resp = httpx.get(ready)
        assert resp.status_code == 200  # still taking webhooks in
        assert "wrong-secret-y" not in resp.text
        # The gauge the delivery process set, through the web process's /metrics.
        assert metric(relay.admin_url, "igbridge_credentials_ok", 'platform="genesys"') == 0
        assert metric(relay.admin_url, "igbridge_credentials_ok", 'platform="instagram"') == 1
    finally:
        relay.stop()


def test_probes_and_metrics_are_on_the_admin_port_only(sandbox: Sandbox, tmp_path: Path) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    relay.start()
    try:
        scrape = httpx.get(f"{relay.admin_url}/metrics")
        assert scrape.status_code == 200
        assert "igbridge_dead_letters{" in scrape.text
        assert httpx.get(f"{relay.admin_url}/readyz").json() == {"status": "ready"}
        assert httpx.get(f"{relay.admin_url}/healthz").status_code == 200
        # The webhook port is the one the internet reaches: no metrics, no readiness
        # details; /healthz stays for load balancers that check the traffic port.
        assert httpx.get(f"{relay.url}/metrics").status_code == 404
        assert httpx.get(f"{relay.url}/readyz").status_code == 404
        assert httpx.get(f"{relay.url}/healthz").json() == {"status": "ok"}
        # And no webhooks on the admin port.
        body = sandbox.meta.webhook([sandbox.meta.messaging("7002", {"text": "hi"})])
        wrong = sandbox.meta.deliver_webhook(f"{relay.admin_url}/webhooks/instagram", body)
        assert wrong.status_code == 404
    finally:
        relay.stop()


def test_a_taken_admin_port_ends_start_up_with_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        relay.admin_port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="relay exited"):
            relay.start()
    assert relay.proc is not None
    assert relay.proc.returncode == 1
    log = relay.log_path.read_text()
    assert f"admin port: cannot listen on 127.0.0.1:{relay.admin_port}" in log
    assert "Traceback" not in log


def test_killing_the_web_process_takes_the_delivery_process_with_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    relay.start()
    assert relay.proc is not None
    (child,) = children(relay.proc.pid)
    relay.kill()
    assert wait_until(lambda: gone(child)), "the delivery process outlived the web process"


def test_a_dead_delivery_process_stops_the_relay_with_an_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    relay = RelayProcess(sandbox.relay_env(tmp_path / "r.db"), tmp_path / "relay.log")
    relay.start()
    try:
        assert relay.proc is not None
        (child,) = children(relay.proc.pid)
        os.kill(child, signal.SIGKILL)
        assert wait_until(lambda: relay.proc is not None and relay.proc.poll() is not None)
        assert relay.proc.returncode == 1  # a supervisor restarts it whole
        assert "delivery process exited unexpectedly" in relay.log_path.read_text()
    finally:
        relay.stop()


def test_a_stopped_relay_leaves_no_metrics_folder_behind(sandbox: Sandbox, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**sandbox.relay_env(tmp_path / "r.db"), "TMPDIR": str(scratch)}
    relay = RelayProcess(env, tmp_path / "relay.log")
    relay.start()
    assert [p.name[:17] for p in scratch.iterdir()] == ["igbridge-metrics-"]
    relay.stop()  # SIGTERM, as Kubernetes stops a pod
    assert relay.proc is not None
    assert relay.proc.returncode == 0
    assert list(scratch.iterdir()) == []
