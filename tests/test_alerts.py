"""The chart's alerts, evaluated by Prometheus's own rule engine: the PrometheusRule is
rendered with helm and every rule runs through ``promtool test rules`` against the unit
tests in tests/alerts/ (scripts/setup installs promtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_chart import by_kind, render

ALERT_TESTS = Path(__file__).parent / "alerts"
RUNBOOK = Path(__file__).parents[1] / "docs" / "runbook.md"
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


def rules(values: dict[str, Any] = MONITORING) -> list[dict[str, Any]]:
    (rule,) = by_kind(render(values), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return [r for group in groups for r in group["rules"]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run scripts/setup (Debian's prometheus package)")
    return path


def rendered_rules(folder: Path) -> None:
    (rule,) = by_kind(render(MONITORING), "PrometheusRule")
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))


def test_rules_are_valid_promql(tmp_path: Path) -> None:
    rendered_rules(tmp_path)
    result = subprocess.run(
        [promtool(), "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit", sorted(p.name for p in ALERT_TESTS.glob("*_test.yaml")))
def test_alerts_fire_when_and_only_when_they_should(tmp_path: Path, unit: str) -> None:
    rendered_rules(tmp_path)
    shutil.copy(ALERT_TESTS / unit, tmp_path / unit)
    result = subprocess.run(
        [promtool(), "test", "rules", unit],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for unit in ALERT_TESTS.glob("*_test.yaml")
        for test in yaml.safe_load(unit.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a test that only expects silence proves nothing fires
    }
    assert {r["alert"] for r in rules()} == tested


def test_every_alert_links_to_its_runbook_section() -> None:
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        anchor = re.fullmatch(r"https://\S+/docs/runbook\.md#(\w+)", url)
        assert anchor is not None, url
        assert anchor.group(1) == rule["alert"].lower()
        assert anchor.group(1) in headings, f"docs/runbook.md has no section {rule['alert']}"


def test_operator_down_needs_the_charts_pod_monitor() -> None:
    """Without the PodMonitor no job="igbridge-operator" exists, and the alert would fire
    for ever; it is left out then."""
    alone = {"metrics": {"prometheusRule": {"enabled": True}}}
    assert "IgbridgeOperatorDown" not in {r["alert"] for r in rules(alone)}
    assert "IgbridgeOperatorDown" in {r["alert"] for r in rules()}


def test_store_gauges_are_never_summed_across_replicas() -> None:
    """Every replica reads the same store, so sum() would multiply by the replica count."""
    store_gauges = (
        "igbridge_queue_depth",
        "igbridge_dead_letters",
        "igbridge_oldest_job_age_seconds",
        "igbridge_conversations_near_window_end",
    )
    for rule in rules():
        if any(name in rule["expr"] for name in store_gauges):
            assert not re.search(r"\bsum\b", rule["expr"]), rule["expr"]


def test_alerts_name_only_exported_metrics() -> None:
    from tests.test_dashboard import SCRAPE_SERIES, exported, metric_names

    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert "igbridge_oldest_job_age_seconds" in used
    assert used - (exported() | SCRAPE_SERIES) == set()
