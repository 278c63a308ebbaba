"""Checks that keep the contracts between the project's parts true: what the operator sets
is what the relay reads, the CRD says what the operator parses, and the chart sets only
what the operator reads."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel

from igbridge.operator import builders
from igbridge.operator.settings import OperatorSettings, load_operator_settings
from igbridge.operator.spec import ChannelSpec, parse_spec
from igbridge.relay.channel_status import RelayReport
from igbridge.relay.config import ENV_PREFIX, SECRET_FIELDS, Settings, load_settings
from igbridge.relay.pipeline.guard import GuardRules
from tests.test_chart import CRD, by_kind, render
from tests.test_config import BASE_ENV

FULL_GUARD: dict[str, Any] = {
    "blockedSenders": ["123"],
    "keywords": ["free followers"],
    "patterns": ["(?i)crypto"],
    "blockLinkOnly": True,
    "maxRepeats": 3,
    "repeatWindowSeconds": 600,
    "rateLimit": {"messages": 5, "perSeconds": 60},
    "action": "flag",
    "loops": {
        "replySeconds": 10,
        "bounces": 3,
        "windowSeconds": 120,
        "quietSeconds": 300,
        "similarity": 0.9,
    },
}


def full_spec(*, redis: bool) -> dict[str, Any]:
    """Every option of the spec set (with or without a Redis store)."""
    store = {"redisSecretRef": {"name": "shop-redis", "urlKey": "dsn"}} if redis else {}
    return {
        "publicUrl": "https://shop.example.com/ig",
        "instagram": {
            "accountId": "1784",
            "login": "instagram",
            "pageId": "1020",
            "pageSubscribedFields": ["feed"],
            "entryIds": ["1785", "1786"],
            "standby": "deliver",
            "graphUrl": "https://graph.instagram.com",
            "apiVersion": "v22.0",
            "credentialsSecretRef": {
                "name": "shop-meta",
                "appSecretKey": "app",
                "accessTokenKey": "token",
            },
            "subscribeWebhooks": False,
        },
        "genesys": {
            "apiUrl": "https://api.mypurecloud.ie",
            "loginUrl": "https://login.mypurecloud.ie",
            "credentialsSecretRef": {
                "name": "shop-genesys",
                "clientIdKey": "id",
                "clientSecretKey": "secret",
            },
            "inboundFlowId": "flow-1",
            "integrationName": "Shop IG",
            "supportedContentId": "sc-1",
            "messagingSettingId": "ms-1",
        },
        "relay": {
            "image": "registry.example.com/ig:1",
            "replicas": 2 if redis else 1,
            "resources": {"limits": {"memory": "512Mi"}},
            "logLevel": "DEBUG",
            "store": store,
            "commentReplies": "public",
        },
        "guard": FULL_GUARD,
        "window": {"escalateAfterSeconds": 3600, "priority": 10, "humanAgentTag": False},
        "deletionPolicy": "Orphan",
    }


def relay_reads(name: str) -> bool:
    """Whether the relay's Settings reads this variable (``X_FILE`` for a secret X)."""
    if not name.startswith(ENV_PREFIX):
        return False
    field = name[len(ENV_PREFIX) :].lower()
    if field in Settings.model_fields:
        return True
    return field.endswith("_file") and field.removesuffix("_file") in SECRET_FIELDS


@pytest.mark.parametrize("redis", [False, True], ids=["sqlite", "redis"])
def test_every_variable_the_operator_sets_is_one_the_relay_reads(redis: bool) -> None:
    spec = parse_spec(full_spec(redis=redis))
    deployment = builders.build_deployment(
        "shop", "default", "uid", spec, integration_id="i-1", image="img", checksum="c"
    )
    names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names))
    assert [n for n in names if not relay_reads(n)] == []
    assert ("IGBRIDGE_STORE_URL_FILE" in names) is redis


def test_the_relay_reads_the_accounts_further_ids_and_standby_choice_as_the_spec_says() -> None:
    deployment = builders.build_deployment(
        "shop",
        "default",
        "uid",
        parse_spec(full_spec(redis=False)),
        integration_id="i-1",
        image="img",
        checksum="c",
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    wanted = ("IGBRIDGE_INSTAGRAM_ENTRY_IDS", "IGBRIDGE_STANDBY", "IGBRIDGE_INSTAGRAM_ACCOUNT_ID")
    settings = load_settings({**BASE_ENV, **{k: env[k] for k in wanted}})
    assert settings.instagram_entry_ids == ("1785", "1786")
    assert settings.standby == "deliver"


def test_the_guard_the_operator_accepts_is_the_one_the_relay_reads() -> None:
    spec = parse_spec(full_spec(redis=False))
    assert GuardRules.model_validate_json(spec.guard_json) == spec.guard


# -- The CRD against the models -----------------------------------------------------------

Tree = dict[str, "Tree | None"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def model_tree(model: type[BaseModel]) -> Tree:
    """Field JSON names, nested models as subtrees."""
    tree: Tree = {}
    for name, field in model.model_fields.items():
        nested = _model_of(field.annotation)
        tree[field.alias or name] = model_tree(nested) if nested else None
    return tree


def schema_tree(schema: dict[str, Any]) -> Tree | None:
    properties = schema.get("properties")
    if properties is None:
        return None
    return {name: schema_tree(sub) for name, sub in properties.items()}


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"])


def test_the_crd_spec_has_exactly_the_fields_the_operator_parses() -> None:
    assert schema_tree(crd_spec_schema()) == model_tree(ChannelSpec)


def test_the_crd_guard_has_exactly_the_relays_rules_and_nothing_else() -> None:
    guard = crd_spec_schema()["properties"]["guard"]
    assert schema_tree(guard) == model_tree(GuardRules)
    assert "x-kubernetes-preserve-unknown-fields" not in yaml.safe_dump(guard)


def _literals(model: type[BaseModel], path: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        where = f"{path}{field.alias or name}"
        nested = _model_of(field.annotation)
        if nested is not None:
            found |= _literals(nested, where + ".")
        elif typing.get_origin(field.annotation) is Literal:
            found[where] = sorted(typing.get_args(field.annotation))
    return found


def test_the_crd_enums_are_the_operators_choices() -> None:
    literals = _literals(ChannelSpec)
    assert "guard.action" in literals
    for path, choices in literals.items():
        schema = crd_spec_schema()
        for part in path.split("."):
            schema = schema["properties"][part]
        assert sorted(schema["enum"]) == choices, path


def test_the_crd_printer_columns_read_fields_the_relay_writes() -> None:
    crd = yaml.safe_load(CRD.read_text())
    report_fields = {f.alias or n for n, f in RelayReport.model_fields.items()}
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    relay_paths = [c["jsonPath"] for c in columns if c["jsonPath"].startswith(".status.relay.")]
    assert relay_paths
    for path in relay_paths:
        assert path.removeprefix(".status.relay.") in report_fields


# -- The chart against the operator's settings --------------------------------------------


def test_the_chart_sets_only_what_the_operator_reads_and_it_parses() -> None:
    docs = render(
        {
            "channelIngress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": "le"},
                "tlsSecretTemplate": "{name}-tls",
            }
        }
    )
    (deployment,) = by_kind(docs, "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith(ENV_PREFIX)
    }
    fields = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    assert set(env) <= fields
    settings = load_operator_settings(env)
    assert settings.ingress == builders.IngressOptions(
        class_name="nginx",
        annotations={"cert-manager.io/cluster-issuer": "le"},
        tls_secret_template="{name}-tls",
    )
