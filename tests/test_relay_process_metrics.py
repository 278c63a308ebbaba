"""``igbridge-relay serve``'s /metrics carries the usual process and Python series (CPU,
memory, version), and in the two-process mode the delivery process's CPU and memory too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels or s.name == "python_info"
    }


@pytest.mark.parametrize("delivery", ["process", "inline"])
def test_serve_exports_process_and_python_metrics(
    sandbox: Sandbox, tmp_path: Path, delivery: str
) -> None:
    relay = RelayProcess(
        sandbox.relay_env(tmp_path / "relay.db"),
        tmp_path / "relay.log",
        serve_args=("--delivery", delivery),
    )
    relay.start()
    try:
        got = scrape(relay.admin_url)
    finally:
        relay.stop()
    assert got["process_cpu_seconds_total"] > 0
    assert got["process_resident_memory_bytes"] > 10_000_000  # a Python with the relay loaded
    assert got["python_info"] == 1
    if delivery == "inline":
        assert "igbridge_delivery_process_cpu_seconds_total" not in got
        return
    assert got["igbridge_delivery_process_cpu_seconds_total"] > 0
    assert got["igbridge_delivery_process_resident_memory_bytes"] > 10_000_000
    # The web process (serving the scrape) started the delivery process, not the reverse.
    assert got["igbridge_delivery_process_start_time_seconds"] >= got["process_start_time_seconds"]
