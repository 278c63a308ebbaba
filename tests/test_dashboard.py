"""The chart's Grafana dashboard: shipped in a ConfigMap for Grafana's sidecar when asked,
valid PromQL, and asking only for metrics the relay or the operator export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from igbridge.operator import metrics as operator_metrics
from igbridge.relay.metrics import RelayMetrics
from tests.test_chart import CHART, K8S_VERSION, by_kind, render

DASHBOARD = CHART / "dashboards" / "igbridge.json"
# Series Prometheus makes itself for every scrape target.
SCRAPE_SERIES = {"up"}
# Gauges every replica reads from the one store: summing them multiplies by replicas.
STORE_GAUGES = (
    "igbridge_queue_depth",
    "igbridge_dead_letters",
    "igbridge_oldest_job_age_seconds",
    "igbridge_conversations_near_window_end",
)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
# PromQL words that look like names: keywords, and label lists after by/without/on/...
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
KEYWORDS |= {"unless", "offset", "inf", "nan"}


def series_names(registry: CollectorRegistry) -> set[str]:
    """The names a scrape of this registry can show, children or not yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def exported() -> set[str]:
    return series_names(RelayMetrics().registry) | series_names(operator_metrics.REGISTRY)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: what is left once strings, label matchers,
    ranges, label lists and function calls are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    words = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {w for w in words if w.lower() not in KEYWORDS}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = re.fullmatch(r"label_values\((.*), \w+\)", var["query"]["query"])
            assert query is not None, var["query"]
            exprs.append(query.group(1))
    return exprs


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (queue) (rate(igbridge_delivered_total{job="x"}[5m]))',
            {"igbridge_delivered_total"},
        ),
        (
            "min by (namespace) (igbridge_instagram_token_expiry_timestamp_seconds) - time()",
            {"igbridge_instagram_token_expiry_timestamp_seconds"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(a_bucket{r=~"$r"}[$__rate_interval])))',
            {"a_bucket"},
        ),
        ("up == 0 or absent(up)", {"up"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_query_names_only_exported_metrics() -> None:
    known = exported() | SCRAPE_SERIES
    assert "igbridge_operator_reconciles_total" in known  # the registries were read
    used = {name for expr in expressions() for name in metric_names(expr)}
    assert used, "no metric found in the dashboard"
    assert used - known == set()


def test_the_panels_an_operator_reads_first_are_there() -> None:
    used = {name for expr in expressions() for name in metric_names(expr)}
    assert used >= {
        "igbridge_webhook_requests_total",
        "igbridge_delivered_total",
        "igbridge_webhook_ack_seconds_bucket",
        "igbridge_queue_depth",
        "igbridge_oldest_job_age_seconds",
        "igbridge_delivery_retries_total",
        "igbridge_outbound_failed_total",
        "igbridge_dead_letters",
        "igbridge_sla_escalations_total",
        "up",
        "igbridge_instagram_token_expiry_timestamp_seconds",
        "igbridge_operator_reconciles_total",
        "igbridge_operator_errors_total",
    }


def test_store_gauges_are_never_summed_across_replicas() -> None:
    for expr in expressions():
        if any(gauge in expr for gauge in STORE_GAUGES):
            assert not re.search(r"\b(sum|count)\b", expr), expr


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule, with Grafana's variables filled."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run scripts/setup (Debian's prometheus package)")
    filled = [
        re.sub(r"\$__rate_interval", "5m", re.sub(r"\$(namespace|channel)", ".*", e))
        for e in expressions()
    ]
    rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(filled)]
    path = tmp_path / "dashboard.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_dashboard_ships_in_a_sidecar_configmap_only_when_enabled() -> None:
    def dashboards(values: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            d for d in by_kind(render(values), "ConfigMap") if "igbridge.json" in d.get("data", {})
        ]

    assert dashboards({}) == []
    (configmap,) = dashboards({"dashboards": {"enabled": True}})
    kubernetes_validate.validate(configmap, K8S_VERSION, strict=True)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["igbridge.json"]) == dashboard()
    (custom,) = dashboards(
        {
            "dashboards": {
                "enabled": True,
                "labels": {"team-dashboards": "yes"},
                "annotations": {"grafana_folder": "igbridge"},
            }
        }
    )
    assert custom["metadata"]["labels"]["team-dashboards"] == "yes"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "igbridge"}
