"""The operator's settings: the chart's variables, their defaults, and bad values named."""

from __future__ import annotations

import pytest

from igbridge.operator.builders import IngressOptions, PodOptions
from igbridge.operator.settings import load_operator_settings
from igbridge.relay.config import ConfigError


def test_defaults() -> None:
    settings = load_operator_settings({})
    assert settings.relay_image == "ghcr.io/igbridge/igbridge:latest"
    assert settings.operator_resync_seconds == 60.0
    assert settings.operator_recheck_seconds == 30.0
    assert settings.relay_grace_seconds == 90.0
    assert settings.ingress is None
    assert settings.relay_pod == PodOptions()


def test_every_variable_is_read() -> None:
    settings = load_operator_settings(
        {
            "IGBRIDGE_RELAY_IMAGE": "registry.example.com/ig:2",
            "IGBRIDGE_OPERATOR_RESYNC_SECONDS": "15",
            "IGBRIDGE_OPERATOR_RECHECK_SECONDS": "5.5",
            "IGBRIDGE_RELAY_GRACE_SECONDS": "45",
            "IGBRIDGE_CHANNEL_INGRESS_CLASS": "nginx",
            "IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS": '{"a.example.com/b": "c"}',
            "IGBRIDGE_CHANNEL_INGRESS_TLS_SECRET": "{name}-tls",
            "IGBRIDGE_RELAY_POD": '{"imagePullSecrets": ["regcred"], "priorityClassName": "hi"}',
            # The relay's variables, and anything else, are not the operator's concern.
            "IGBRIDGE_META_APP_SECRET": "x",
            "PATH": "/usr/bin",
        }
    )
    assert settings.relay_image == "registry.example.com/ig:2"
    assert (
        settings.operator_resync_seconds,
        settings.operator_recheck_seconds,
        settings.relay_grace_seconds,
    ) == (15.0, 5.5, 45.0)
    assert settings.ingress == IngressOptions("nginx", {"a.example.com/b": "c"}, "{name}-tls")
    assert settings.relay_pod.image_pull_secrets == ("regcred",)
    assert settings.relay_pod.priority_class_name == "hi"


def test_an_ingress_needs_a_class() -> None:
    settings = load_operator_settings(
        {"IGBRIDGE_CHANNEL_INGRESS_CLASS": "", "IGBRIDGE_CHANNEL_INGRESS_TLS_SECRET": "x"}
    )
    assert settings.ingress is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IGBRIDGE_OPERATOR_RESYNC_SECONDS", "often"),
        ("IGBRIDGE_OPERATOR_RESYNC_SECONDS", "0"),
        ("IGBRIDGE_OPERATOR_RECHECK_SECONDS", ""),
        ("IGBRIDGE_RELAY_GRACE_SECONDS", "-1"),
        ("IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS", "{not json"),
        ("IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS", '["a list"]'),
        ("IGBRIDGE_CHANNEL_INGRESS_ANNOTATIONS", '{"a": 1}'),
        ("IGBRIDGE_RELAY_POD", "{not json"),
        ("IGBRIDGE_RELAY_POD", '{"tolerations": {"key": "a"}}'),
    ],
)
def test_a_bad_value_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_operator_settings({name: value})
    assert str(caught.value).startswith(f"{name}: ")
    assert "\n" not in str(caught.value)


def test_a_mistyped_relay_pod_key_is_named() -> None:
    """The chart's relayPods reach the operator as JSON: a key it does not know stops it
    with that key, instead of the relay pods silently lacking it."""
    with pytest.raises(ConfigError) as caught:
        load_operator_settings({"IGBRIDGE_RELAY_POD": '{"nodeselector": {"a": "b"}}'})
    assert str(caught.value) == "IGBRIDGE_RELAY_POD: nodeselector: Extra inputs are not permitted"
