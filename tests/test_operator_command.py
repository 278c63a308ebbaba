"""``igbridge-operator`` as a process: JSON logs, a liveness endpoint, a namespace to watch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from igbridge.operator.conditions import now_iso
from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox
from tests.cluster import run_cluster
from tests.operator_harness import (
    NAMESPACE,
    condition,
    secrets_and_channel,
    status_of,
    wait_until,
)


def test_operator_command(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "operator.log"
    with run_cluster(tmp_path) as cluster, log_path.open("wb") as log:
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            # No resync within the test: Ready must follow the relay's report by itself.
            "IGBRIDGE_OPERATOR_RESYNC_SECONDS": "600",
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "igbridge.operator",
                "--namespace",
                NAMESPACE,
                "--verbose",
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for manifest in secrets_and_channel(sandbox):
                cluster.apply(manifest)
            wait_until(
                lambda: status_of(cluster, "Synced") == "True",
                what="Synced",
            )
            channel = cluster.get("instagramchannels", NAMESPACE, "shop")
            assert condition(channel, "Ready").get("status") == "False"  # no relay yet
            # A relay pod's first report, as it writes it: the status subresource only.
            report = {"status": {"relay": {"lastHeartbeat": now_iso(), "ready": True}}}
            patched = cluster.kubectl(
                "patch", "igch", "shop", "--subresource=status", "--type=merge",
                "-p", json.dumps(report),
            )  # fmt: skip
            assert patched.returncode == 0, patched.stderr
            wait_until(
                lambda: status_of(cluster, "Ready") == "True",
                what="Ready after the relay's first report",
            )
            alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert alive.status_code == 200
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("message" in r or "msg" in r for r in records)
    text = log_path.read_text()
    assert sandbox.genesys.client_secret not in text  # not even with --verbose
    assert "relay_reported" not in text  # a relay report's routine check stays quiet


def test_operator_command_requires_a_scope() -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.operator"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--namespace" in done.stderr


def test_a_bad_setting_is_named_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.operator", "--namespace", NAMESPACE],
        env={**os.environ, "IGBRIDGE_OPERATOR_RESYNC_SECONDS": "often"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        "igbridge-operator: configuration error: IGBRIDGE_OPERATOR_RESYNC_SECONDS: "
    )
