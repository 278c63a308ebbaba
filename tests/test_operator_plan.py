"""The operator's decisions as data: no cluster, no Genesys, no Meta."""

from __future__ import annotations

import json
from typing import Any

import pytest

from igbridge.operator import builders, plan
from igbridge.operator.channel import Channel
from igbridge.operator.problems import SpecProblem
from igbridge.operator.relay_verdict import Verdict, relay_available
from igbridge.operator.spec import ChannelSpec, parse_spec
from igbridge.relay.channel_status import RelayReport, parse_heartbeat

SPEC: dict[str, Any] = {
    "publicUrl": "https://shop.example.com/ig",
    "instagram": {
        "accountId": "1784",
        "pageId": "1020",
        "credentialsSecretRef": {"name": "shop-meta"},
    },
    "genesys": {"region": "mypurecloud.ie", "credentialsSecretRef": {"name": "shop-genesys"}},
}
CHANNEL = Channel(
    name="shop",
    namespace="default",
    uid="uid-1",
    generation=1,
    spec=SPEC,
    status={},
    annotations={},
)
SIGNING = "a-signing-secret-of-length"
URL = "https://shop.example.com/ig/webhooks/genesys"


def spec(**changes: Any) -> ChannelSpec:
    return parse_spec({**SPEC, **changes})


def genesys(**changes: Any) -> dict[str, Any]:
    return {**SPEC["genesys"], **changes}


# -- Secrets ------------------------------------------------------------------------------


def test_secrets_needed_without_redis() -> None:
    assert plan.secrets_needed(spec()) == (
        plan.SecretNeed("meta", "shop-meta", ("app-secret", "access-token")),
        plan.SecretNeed("genesys", "shop-genesys", ("client-id", "client-secret")),
    )


def test_secrets_needed_with_redis_and_custom_keys() -> None:
    needs = plan.secrets_needed(
        spec(
            genesys=genesys(
                credentialsSecretRef={"name": "g", "clientIdKey": "id", "clientSecretKey": "pw"}
            ),
            relay={"store": {"redisSecretRef": {"name": "shop-redis", "urlKey": "dsn"}}},
        )
    )
    assert [(n.role, n.name, n.keys) for n in needs] == [
        ("meta", "shop-meta", ("app-secret", "access-token")),
        ("genesys", "g", ("id", "pw")),
        ("store", "shop-redis", ("dsn",)),
    ]


# -- The integration ----------------------------------------------------------------------


def test_desired_integration_by_default() -> None:
    assert plan.desired_integration(CHANNEL, spec(), SIGNING) == plan.DesiredIntegration(
        name="igbridge-default-shop", webhook_url=URL, signing_secret=SIGNING
    )


def test_desired_integration_from_every_option() -> None:
    desired = plan.desired_integration(
        CHANNEL,
        spec(
            genesys=genesys(
                integrationName="Shop IG",
                supportedContentId="sc-1",
                messagingSettingId="ms-1",
                inboundFlowId="flow-1",
            )
        ),
        SIGNING,
    )
    assert desired == plan.DesiredIntegration(
        name="Shop IG",
        webhook_url=URL,
        signing_secret=SIGNING,
        supported_content_id="sc-1",
        messaging_setting_id="ms-1",
        inbound_flow_id="flow-1",
        enforce_name=True,
    )


def test_integration_name_is_cut_to_what_genesys_accepts() -> None:
    long = Channel("x" * 120, "default", "u", 1, SPEC, {}, {})
    assert len(plan.desired_integration(long, spec(), SIGNING).name) == 100


# -- Owned objects ------------------------------------------------------------------------


def kinds(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in manifests]


def test_owned_objects_on_sqlite() -> None:
    objects = plan.owned_objects(
        CHANNEL, spec(), integration_id="i-1", checksum="c", image="img:1", ingress=None
    )
    assert kinds(objects) == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "PersistentVolumeClaim",
        "Deployment",
    ]
    deployment = objects[-1]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        builders.CHECKSUM_ANNOTATION: "c"
    }
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"
    for manifest in objects:
        assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_owned_objects_on_redis_with_an_ingress() -> None:
    ingress = builders.IngressOptions(class_name="nginx", annotations={})
    objects = plan.owned_objects(
        CHANNEL,
        spec(relay={"replicas": 2, "store": {"redisSecretRef": {"name": "r"}}}),
        integration_id="i-1",
        checksum="c",
        image="img:1",
        ingress=ingress,
    )
    assert kinds(objects) == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "Ingress",
    ]
    deployment, budget = objects[4], objects[5]
    assert deployment["spec"]["replicas"] == 2
    # Set in full, so server-side apply removes it on a switch to SQLite's Recreate.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    # A drain evicts one relay pod at a time; the budget selects exactly the Deployment's pods.
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert plan.retired_objects(CHANNEL, spec(relay={"replicas": 2, "store": REDIS_STORE})) == []


REDIS_STORE = {"redisSecretRef": {"name": "r"}}


def test_probes_and_scrape_use_the_admin_port_and_the_ingress_the_webhook_port() -> None:
    ingress_options = builders.IngressOptions(class_name="nginx", annotations={})
    objects = plan.owned_objects(
        CHANNEL, spec(), integration_id="i-1", checksum="c", image="img:1", ingress=ingress_options
    )
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # What the relay is told to listen on is what the pod declares.
    command = container["command"]
    assert ports == {
        "http": int(command[command.index("--port") + 1]),
        "admin": int(command[command.index("--admin-port") + 1]),
    }
    assert ports["http"] != ports["admin"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    # The Service names both (the ServiceMonitor scrapes "admin"); the internet gets "http".
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"http": "http", "admin": "admin"}
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"] == {"name": "http"}


def test_one_replica_gets_no_disruption_budget_and_an_old_one_is_retired() -> None:
    objects = plan.owned_objects(
        CHANNEL,
        spec(relay={"replicas": 1, "store": REDIS_STORE}),
        integration_id="i-1",
        checksum="c",
        image="img:1",
        ingress=None,
    )
    assert "PodDisruptionBudget" not in kinds(objects)
    assert plan.retired_objects(CHANNEL, spec()) == [
        ("policy/v1", "PodDisruptionBudget", "shop-relay")
    ]


def pod_template(pods: builders.PodOptions | None) -> dict[str, Any]:
    (deployment,) = [
        m
        for m in plan.owned_objects(
            CHANNEL, spec(), integration_id="i", checksum="c", image="i", ingress=None, pods=pods
        )
        if m["kind"] == "Deployment"
    ]
    return dict(deployment["spec"]["template"])


def test_relay_pods_get_the_charts_pull_secrets_and_scheduling() -> None:
    pods = builders.PodOptions.model_validate(
        {
            "imagePullSecrets": ["regcred"],
            "imagePullPolicy": "Always",
            "nodeSelector": {"pool": "relays"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
                {
                    "maxSkew": 2,
                    "topologyKey": "host",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"tier": "chat"}},
                },
            ],
            "priorityClassName": "relays-high",
            "podAnnotations": {"prometheus.io/scrape": "true", builders.CHECKSUM_ANNOTATION: "x"},
            "podLabels": {"team": "cx", builders.CHANNEL_LABEL: "someone-else"},
        }
    )
    template = pod_template(pods)
    pod = template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["nodeSelector"] == {"pool": "relays"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["priorityClassName"] == "relays-high"
    assert "nodeAffinity" in pod["affinity"]
    # Without a selector a constraint spreads this channel's own pods; one given is kept.
    own, given = pod["topologySpreadConstraints"]
    assert own["labelSelector"] == {
        "matchLabels": {builders.CHANNEL_LABEL: "shop", "app.kubernetes.io/name": "igbridge-relay"}
    }
    assert given["labelSelector"] == {"matchLabels": {"tier": "chat"}}
    # The chart's extras are added; the operator's own labels and checksum win.
    assert template["metadata"]["labels"]["team"] == "cx"
    assert template["metadata"]["labels"][builders.CHANNEL_LABEL] == "shop"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        builders.CHECKSUM_ANNOTATION: "c",
    }


def test_relay_pods_without_options_carry_no_empty_scheduling_fields() -> None:
    pod = pod_template(None)["spec"]
    assert "imagePullPolicy" not in pod["containers"][0]
    for field in (
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
    ):
        assert field not in pod


def env(channel_spec: ChannelSpec) -> dict[str, str]:
    (deployment,) = [
        m
        for m in plan.owned_objects(
            CHANNEL, channel_spec, integration_id="i", checksum="c", image="i", ingress=None
        )
        if m["kind"] == "Deployment"
    ]
    return {
        e["name"]: e.get("value", "")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_the_relay_gets_the_guard_as_written() -> None:
    guard = {
        "maxRepeats": 3,
        "repeatWindowSeconds": 600,
        "rateLimit": {"messages": 5, "perSeconds": 60},
        "loops": {"bounces": 4},
        "action": "flag",
    }
    assert env(spec(guard=guard))["IGBRIDGE_GUARD"] == json.dumps(guard, sort_keys=True)
    assert env(spec())["IGBRIDGE_GUARD"] == ""
    assert env(spec(guard={}))["IGBRIDGE_GUARD"] == ""


# -- Spec problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"guard": {"maxRepeat": 3}},
            "spec.guard.maxRepeat: Extra inputs are not permitted",
            id="guard-typo",
        ),
        pytest.param(
            {"guard": {"loops": {"bounces": 1}}},
            "spec.guard.loops.bounces: Input should be greater than or equal to 2",
            id="guard-loops-bound",
        ),
        pytest.param(
            {"guard": {"action": "delete"}},
            "spec.guard.action: Input should be 'drop' or 'flag'",
            id="guard-action",
        ),
        pytest.param(
            {"relay": {"replicas": 3}},
            "spec.relay: Value error, replicas > 1 needs store.redisSecretRef: "
            "SQLite serves one replica",
            id="replicas-without-redis",
        ),
        pytest.param(
            {"publicUrl": None}, "spec.publicUrl: Input should be a valid string", id="url"
        ),
    ],
)
def test_an_invalid_spec_is_a_typed_problem(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecProblem) as caught:
        spec(**changes)
    problem = caught.value
    assert (problem.condition, problem.reason, problem.message) == (
        "Synced",
        "InvalidSpec",
        message,
    )


def test_a_guard_pattern_must_compile() -> None:
    with pytest.raises(SpecProblem) as caught:
        spec(guard={"patterns": ["(unclosed"]})
    assert caught.value.message.startswith("spec.guard.patterns: ")
    assert "not a valid regular expression" in caught.value.message


# -- The relay's report -------------------------------------------------------------------

NOW = parse_heartbeat("2026-11-25T10:00:00Z") or 0.0


@pytest.mark.parametrize(
    ("relay", "verdict"),
    [
        pytest.param(
            None, Verdict("Unknown", "WaitingForRelay", "the relay has not reported yet"), id="none"
        ),
        pytest.param(
            {"ready": True},
            Verdict("Unknown", "WaitingForRelay", "the relay has not reported yet"),
            id="no-heartbeat",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:59:50Z", "ready": True},
            Verdict("True", "RelayReporting", "last report 10s ago"),
            id="fresh",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:59:50+00:00"},
            Verdict("True", "RelayReporting", "last report 10s ago"),
            id="fresh-written-by-hand",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:58:00Z", "ready": True},
            Verdict(
                "False",
                "RelayNotReporting",
                "no report from the relay for 120s (grace 90s); check the relay pods",
            ),
            id="stale",
        ),
        pytest.param(
            {"lastHeartbeat": "yesterday"},
            Verdict(
                "False",
                "RelayNotReporting",
                "no report from the relay for infs (grace 90s); check the relay pods",
            ),
            id="unreadable-heartbeat",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:59:59Z", "ready": False, "lastError": "auth failed"},
            Verdict("False", "RelayNotReady", "auth failed"),
            id="not-ready",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:59:59Z", "ready": False},
            Verdict("False", "RelayNotReady", "the relay is not ready"),
            id="not-ready-without-error",
        ),
        pytest.param(
            {"lastHeartbeat": "2026-11-25T09:59:59Z", "ready": "no", "messagesIn": "many"},
            Verdict("True", "RelayReporting", "last report 1s ago"),
            id="odd-fields-read-leniently",
        ),
        pytest.param(
            "not an object",
            Verdict("Unknown", "WaitingForRelay", "the relay has not reported yet"),
            id="junk",
        ),
    ],
)
def test_relay_available(relay: object, verdict: Verdict) -> None:
    assert relay_available(RelayReport.read(relay), now=NOW, grace=90.0) == verdict
