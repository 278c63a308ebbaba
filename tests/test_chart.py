"""The Helm chart, checked for real: lint, render, schema, Kubernetes schemas, one CRD."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from igbridge.operator.builders import build_service, relay_name
from igbridge.operator.conditions import Conditions
from igbridge.operator.settings import load_operator_settings

ROOT = Path(__file__).parents[1]
CHART = ROOT / "charts" / "igbridge"
CRD = CHART / "crds" / "instagramchannels.igbridge.dev.yaml"
K8S_VERSION = "1.30.0"
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def render(
    values: dict[str, Any] | None = None, namespace: str = "igbridge"
) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    files = chart.render(values or {}, name="ig", namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in files.items():
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


EVERY_POD_OPTION: dict[str, Any] = {
    # A parent chart's shared values: the chart works as a subchart.
    "global": {"imageRegistry": "registry.example.com"},
    "imagePullSecrets": [{"name": "regcred"}, "legacy-name"],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/ig"}},
    "podAnnotations": {"example.com/team": "cx"},
    "podLabels": {"team": "cx"},
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}],
    "priorityClassName": "operators",
    "relayPods": {
        "nodeSelector": {"pool": "relays"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "priorityClassName": "relays",
        "podAnnotations": {"example.com/scrape": "yes"},
        "podLabels": {"team": "cx"},
    },
}


def test_lint_is_clean() -> None:
    result = helm.lint(CHART, strict=True)
    assert result["errors"] == []
    # Severity 1 is helm's INFO ("icon is recommended"); warnings (2) and errors (>2) fail.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespaces": ["shop-a", "shop-b"], "relayImage": "registry.example.com/ig:1"},
        {
            "watchNamespaces": ["*"],
            "secretNamespaces": ["shop-a"],
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        },
        EVERY_POD_OPTION,
    ],
)
def test_rendered_manifests_are_valid_kubernetes(values: dict[str, Any]) -> None:
    docs = render(values)
    assert by_kind(docs, "Deployment")
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_pod_options_reach_the_operator_pod_and_every_relay_pod() -> None:
    docs = render(EVERY_POD_OPTION)
    (deployment,) = by_kind(docs, "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "legacy-name"}]
    assert pod["priorityClassName"] == "operators"
    assert template["metadata"]["annotations"] == {"example.com/team": "cx"}
    assert template["metadata"]["labels"]["team"] == "cx"
    # The selector still matches the pods.
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    env = operator_env(docs)
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/ig"
    }
    # The relay pods' options as the operator reads them, pull secrets included.
    relay = load_operator_settings({"IGBRIDGE_RELAY_POD": env["IGBRIDGE_RELAY_POD"]}).relay_pod
    assert relay.image_pull_secrets == ("regcred", "legacy-name")
    assert relay.image_pull_policy == "IfNotPresent"  # image.pullPolicy, as values.yaml says
    assert relay.node_selector == {"pool": "relays"}
    assert relay.priority_class_name == "relays"
    assert relay.tolerations[0]["key"] == "dedicated"
    assert relay.topology_spread_constraints[0]["topologyKey"] == "zone"
    assert (relay.annotations, relay.labels) == ({"example.com/scrape": "yes"}, {"team": "cx"})


def test_by_default_relay_pods_get_nothing_extra() -> None:
    relay = load_operator_settings(
        {"IGBRIDGE_RELAY_POD": operator_env(render())["IGBRIDGE_RELAY_POD"]}
    )
    assert relay.relay_pod.pod_spec({}) == {}


def test_default_install_is_namespaced_and_least_privilege() -> None:
    docs = render()
    assert not by_kind(docs, "ClusterRole")
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "igbridge"
    for rule in role["rules"]:
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert (spec["replicas"], spec["strategy"]["type"]) == (1, "Recreate")
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"][0] == "--namespace=igbridge"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == "ghcr.io/igbridge/igbridge:0.1.0"


def test_cluster_wide_mode_never_grants_cluster_wide_secrets() -> None:
    docs = render({"watchNamespaces": ["*"], "secretNamespaces": ["shop-a", "shop-b"]})
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert all("secrets" not in rule["resources"] for rule in cluster_role["rules"])
    secret_roles = [
        r for r in by_kind(docs, "Role") if any("secrets" in x["resources"] for x in r["rules"])
    ]
    assert sorted(r["metadata"]["namespace"] for r in secret_roles) == ["shop-a", "shop-b"]
    (deployment,) = by_kind(docs, "Deployment")
    assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_monitoring_is_off_by_default_and_renders_when_asked() -> None:
    assert not [d for d in render() if d["kind"] in CUSTOM_KINDS]
    docs = render(
        {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
    )
    (rules,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for r in rules["spec"]["groups"][0]["rules"]}
    assert alerts == {
        "IgbridgeDeadLetters",
        "IgbridgeRelayStale",
        "IgbridgeBacklogOld",
        "IgbridgeCredentialsRefused",
        "IgbridgeConversationsNearWindowEnd",
        "IgbridgeInstagramTokenExpiring",
        "IgbridgeOperatorErrors",
        "IgbridgeOperatorDown",
    }
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The relays' metrics: on the port their Services name for the admin port (the
    # webhook port serves no /metrics), and those Services are the ones selected.
    service = build_service("shop", "igbridge", "uid-1")
    (endpoint,) = monitor["spec"]["endpoints"]
    (scraped,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert scraped["targetPort"] == "admin"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    # The operator's own metrics, scraped from the port its Deployment names.
    (operator,) = by_kind(docs, "PodMonitor")
    (deployment,) = by_kind(docs, "Deployment")
    assert (
        operator["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert operator["spec"]["podMetricsEndpoints"][0]["port"] in {p["name"] for p in ports}


@pytest.mark.parametrize(
    "bad",
    [
        {"unknownKey": True},
        {"image": {"repository": "x", "pullPolicy": "Sometimes"}},
        {"resyncSeconds": "often"},
        {"watchNamespaces": "everything"},
        {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
        {"imagePullSecrets": [{"secret": "regcred"}]},
        {"imagePullSecrets": [""]},
        {"relayPods": {"nodeselector": {}}},
        {"relayPods": {"topologySpreadConstraints": [{"maxSkew": 1}]}},
        {"extraEnv": [{"value": "no name"}]},
    ],
)
def test_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmError):
        chart.validate_schema(bad)


def test_every_value_is_documented() -> None:
    """Each key in values.yaml, down to two levels, has a comment on the line above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        above = lines[index - 1].strip() if index else ""
        # Keys deeper than two levels are plain data (e.g. resources.requests.cpu).
        assert above.startswith("#") or indent >= 4, f"undocumented: {line}"


def test_crd_is_the_one_the_operator_tests_use() -> None:
    """One source of truth: the chart's crds/ file, checked against the emulator's
    registration and the operator's constants."""
    from igbridge.relay.channel_status import GROUP, PLURAL, VERSION
    from tests.cluster import KINDS

    crd = yaml.safe_load(CRD.read_text())
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], crd["spec"]["versions"][0]["name"], names["plural"]) == (
        GROUP,
        VERSION,
        PLURAL,
    )
    kind, has_status = KINDS[(GROUP, VERSION, PLURAL)]
    assert names["kind"] == kind
    assert has_status == ("status" in crd["spec"]["versions"][0]["subresources"])
    assert names["shortNames"] == ["igch"]
    assert helm.Chart.load(CHART).crds  # the chart ships it
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


def test_channel_ingress_is_opt_in_and_granted_only_then() -> None:
    def ingress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            r
            for role in by_kind(docs, "Role")
            for r in role["rules"]
            if "ingresses" in r["resources"]
        ]

    assert ingress_rules(render()) == []
    docs = render(
        {
            "channelIngress": {
                "enabled": True,
                "className": "nginx",
                "tlsSecretTemplate": "{name}-tls",
            }
        }
    )
    assert ingress_rules(docs)
    (deployment,) = by_kind(docs, "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["IGBRIDGE_CHANNEL_INGRESS_CLASS"] == "nginx"
    assert env["IGBRIDGE_CHANNEL_INGRESS_TLS_SECRET"] == "{name}-tls"


def rules(doc: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs granted, over a Role's or ClusterRole's rules."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in doc["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


@pytest.mark.parametrize(
    "values",
    [{}, {"watchNamespaces": ["*"], "secretNamespaces": ["shop-a"]}],
    ids=["namespaced", "cluster-wide"],
)
def test_rbac_grants_no_secret_listing_and_no_needless_deletes(values: dict[str, Any]) -> None:
    docs = render(values)
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        granted = rules(role)
        assert not granted.get(("", "secrets"), set()) & {"list", "watch", "delete"}
        deleting = {key for key, verbs in granted.items() if "delete" in verbs}
        # Only the disruption budget, when a relay goes back to one replica.
        assert deleting <= {("policy", "poddisruptionbudgets")}
    channel_role = (by_kind(docs, "ClusterRole") or by_kind(docs, "Role"))[0]
    # blockOwnerDeletion on owned objects needs this (OpenShift).
    assert rules(channel_role)[("igbridge.dev", "instagramchannels/finalizers")] == {"update"}


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_every_crd_field_is_described_for_kubectl_explain() -> None:
    undescribed: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            if not str(child.get("description", "")).strip():
                undescribed.append(f"{path}.{name}")
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(crd_schema(), "")
    assert undescribed == []


def test_crd_conditions_are_a_map_keyed_by_type() -> None:
    conditions = crd_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }


def test_the_operators_conditions_are_what_the_crd_accepts() -> None:
    """The status patch would be refused whole if one condition missed a required field."""
    item = crd_schema()["properties"]["status"]["properties"]["conditions"]["items"]
    old = [{"type": "Synced", "status": "True", "reason": "Applied", "message": "ok"}]
    conds = Conditions(old, generation=3)
    conds.set("Synced", "True", "Applied")  # unchanged status, no time in the old one
    conds.set("CredentialsReady", "False", "SecretMissing", "Secret shop/shop-meta not found")
    for condition in conds.finish():
        jsonschema.validate(condition, item)


def test_crd_keeps_names_short_enough_for_the_relay_service() -> None:
    """A Service name is a DNS label (63 characters); the relay's is <name>-relay."""
    (rule,) = crd_schema()["x-kubernetes-validations"]
    longest = 63 - len(relay_name(""))
    assert rule["rule"] == f"self.metadata.name.size() <= {longest}"
    assert len(relay_name("x" * longest)) == 63


def test_kubectl_get_shows_why_a_channel_is_not_ready() -> None:
    crd = yaml.safe_load(CRD.read_text())
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert "priority" not in columns["Reason"]  # shown without -o wide


def install_steps() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Install on a cluster") : text.index("### Routing in Genesys")]


def test_readme_set_flags_survive_bash_and_pass_the_schema() -> None:
    """bash brace-expands an unquoted --set watchNamespaces={a,b} into two words."""
    flags = re.findall(r"--set ('[^']*'|[^\s`]+)", install_steps())
    assert len(flags) >= 4
    chart = helm.Chart.load(CHART)
    for flag in flags:
        (value,) = shlex.split(flag)
        if "{" in value or "[" in value:
            assert flag.startswith("'"), f"quote it: {flag}"
        chart.validate_schema(helm.parse_set_string(value))


def kubectl_lines(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"kubectl [^`\n]+", text)]


def test_every_namespaced_kubectl_command_names_its_namespace() -> None:
    notes = helm.Chart.load(CHART).render({}, name="ig", namespace="shop", is_install=True)
    text = install_steps() + "\n" + next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    commands = kubectl_lines(text)
    assert len(commands) >= 10
    for command in commands:
        if "crds/" in command:
            continue  # the CRD is cluster-scoped
        assert re.search(r" -n \S+", command), f"no -n: {command}"


def test_high_availability_runs_standbys_behind_a_lease_granted_only_then() -> None:
    assert not [r for r in by_kind(render(), "Role") if r["metadata"]["name"].endswith("-leader")]
    for values in ({}, {"watchNamespaces": ["*"], "secretNamespaces": ["shop-a"]}):
        docs = render({**values, "highAvailability": {"enabled": True}})
        for doc in docs:
            if doc["kind"] not in CUSTOM_KINDS:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        (deployment,) = by_kind(docs, "Deployment")
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        # Never fewer than one pod: the old holder hands the Lease to a running standby.
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        args = spec["template"]["spec"]["containers"][0]["args"]
        lease = next(a.split("=", 1)[1] for a in args if a.startswith("--leader-lease="))
        assert "--lease-seconds=15" in args
        namespace, name = lease.split("/")
        assert namespace == "igbridge"  # the release's, whichever namespaces are watched
        (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader")]
        assert role["metadata"]["namespace"] == namespace
        assert rules(role) == {("coordination.k8s.io", "leases"): {"create", "get", "update"}}
        named = [rule for rule in role["rules"] if "get" in rule["verbs"]]
        assert [rule["resourceNames"] for rule in named] == [[name]]
        (binding,) = [
            b
            for b in by_kind(docs, "RoleBinding")
            if b["roleRef"]["name"] == role["metadata"]["name"]
        ]
        assert binding["subjects"][0]["name"] == spec["template"]["spec"]["serviceAccountName"]
        anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
        term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_high_availability_keeps_the_users_affinity_and_lease() -> None:
    affinity: dict[str, Any] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}
    }
    docs = render(
        {
            "highAvailability": {"enabled": True, "replicas": 3, "leaseSeconds": 30},
            "affinity": affinity,
        }
    )
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["affinity"] == affinity
    assert "--lease-seconds=30" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    "bad",
    [
        {"highAvailability": {"enabled": True, "replicas": 1}},
        {"highAvailability": {"leaseSeconds": 3}},  # shorter than the operator accepts
        {"highAvailability": {"enabled": "yes"}},
        {"highAvailability": {"replica": 2}},
    ],
)
def test_schema_rejects_bad_high_availability(bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        helm.Chart.load(CHART).validate_schema(bad)


def test_troubleshooting_and_high_availability_kubectl_commands_name_their_namespace() -> None:
    text = (ROOT / "README.md").read_text()
    for heading in ("\n## Troubleshooting\n", "\n### Operator high availability\n"):
        start = text.index(heading)
        section = text[start : text.find("\n## ", start + len(heading))]
        commands = kubectl_lines(section)
        assert commands, heading
        for command in commands:
            assert re.search(r" -n \S+", command), f"no -n: {command}"
