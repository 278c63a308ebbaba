"""The operator's reconcile metrics: a run is counted by handler and result, timed, and a
run that did not finish names its reason; and a real operator shows them on /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from igbridge.operator import metrics
from igbridge.operator.problems import RetryLater, token_invalid
from igbridge.relay.version import VERSION
from igbridge.sandbox.server import free_port
from igbridge.sandbox.stack import Sandbox
from tests.cluster import Cluster, run_cluster
from tests.operator_harness import condition, run_operator, secrets_and_channel, wait_until


def sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (None, ("ok", None)),
        (token_invalid("Meta answered code 190"), ("spec_problem", "TokenInvalid")),
        (RetryLater("Genesys unavailable", 10.0), ("retry", "RetryLater")),
        (KeyError("metadata"), ("error", "KeyError")),
        (asyncio.CancelledError(), ("cancelled", None)),
    ],
)
def test_outcome_of_a_run(exc: BaseException | None, expected: tuple[str, str | None]) -> None:
    assert metrics.outcome(exc) == expected


def test_a_finished_run_counts_as_ok_and_is_timed() -> None:
    before = sample("igbridge_operator_reconciles_total", handler="resync", result="ok")
    timed = sample("igbridge_operator_reconcile_duration_seconds_count", handler="resync")
    with metrics.reconciling("resync"):
        pass
    assert sample("igbridge_operator_reconciles_total", handler="resync", result="ok") == (
        before + 1
    )
    assert sample("igbridge_operator_reconcile_duration_seconds_count", handler="resync") == (
        timed + 1
    )


def test_a_spec_problem_passes_through_and_counts_its_reason() -> None:
    before = sample("igbridge_operator_errors_total", reason="TokenInvalid")
    runs = sample("igbridge_operator_reconciles_total", handler="reconcile", result="spec_problem")
    problem = token_invalid("Meta answered code 190")
    with pytest.raises(type(problem)) as raised, metrics.reconciling("reconcile"):
        raise problem
    assert raised.value is problem
    assert sample("igbridge_operator_errors_total", reason="TokenInvalid") == before + 1
    assert (
        sample("igbridge_operator_reconciles_total", handler="reconcile", result="spec_problem")
        == runs + 1
    )


def test_build_info_names_the_installed_version() -> None:
    assert sample("igbridge_build_info", version=VERSION) == 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with run_cluster(tmp_path) as c:
        yield c


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_refused_token_shows_on_the_operators_metrics(sandbox: Sandbox, cluster: Cluster) -> None:
    """What the dashboard's operator row and the IgbridgeOperatorErrors alert read."""
    sandbox.meta.add_token("expired-token", expires_in=-60)
    manifests = secrets_and_channel(sandbox)
    manifests[0]["stringData"]["access-token"] = "expired-token"
    port = free_port()
    before = sample("igbridge_operator_errors_total", reason="TokenInvalid")
    with run_operator(cluster, IGBRIDGE_OPERATOR_METRICS_PORT=str(port)):
        for manifest in manifests:
            cluster.apply(manifest)

        def refused() -> bool:
            found = cluster.get("instagramchannels", "default", "shop")
            return condition(found, "CredentialsReady").get("reason") == "TokenInvalid"

        wait_until(refused, what="CredentialsReady=TokenInvalid")
        wait_until(
            lambda: sample("igbridge_operator_errors_total", reason="TokenInvalid") > before,
            what="the error counted",
        )
        seen = scrape(port)
    assert seen[("igbridge_build_info", frozenset({("version", VERSION)}))] == 1
    # The process's own series, as every Python exporter has them.
    assert seen[("process_cpu_seconds_total", frozenset())] > 0
    assert seen[("process_resident_memory_bytes", frozenset())] > 10_000_000
    assert [v for (name, _), v in seen.items() if name == "python_info"] == [1]
    assert seen[("igbridge_operator_leader", frozenset())] == 1  # no Lease: it acts
    spec_problems = [
        value
        for (name, labels), value in seen.items()
        if name == "igbridge_operator_reconciles_total" and ("result", "spec_problem") in labels
    ]
    assert sum(spec_problems) >= 1
    assert seen[("igbridge_operator_errors_total", frozenset({("reason", "TokenInvalid")}))] >= 1
    timed = [
        value
        for (name, _), value in seen.items()
        if name == "igbridge_operator_reconcile_duration_seconds_count"
    ]
    assert sum(timed) >= 1
