"""The channel's ``spec.retention`` reaches the relay as its IGBRIDGE_RETENTION_* settings,
with the same defaults and bounds in the CRD, the operator and the relay; the relay's
public URL (for the data-deletion status links) comes from ``spec.publicUrl``."""

from __future__ import annotations

from typing import Any

import pytest

from igbridge.operator.builders import build_deployment
from igbridge.operator.problems import SpecProblem
from igbridge.operator.spec import RetentionSpec, parse_spec
from igbridge.relay.config import Settings
from tests.test_chart import crd_schema
from tests.test_operator_plan import SPEC

FIELDS = {
    "dedupeSeconds": "retention_dedupe_seconds",
    "deadLetterSeconds": "retention_dead_letter_seconds",
    "deadLetterPayloadSeconds": "retention_dead_letter_payload_seconds",
    "windowSeconds": "retention_window_seconds",
    "recordsSeconds": "retention_records_seconds",
}


def relay_env(spec: dict[str, Any]) -> dict[str, str]:
    deployment = build_deployment(
        "shop", "default", "uid-1", parse_spec(spec), integration_id="i", image="x", checksum="c"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_crd_the_operator_and_the_relay_agree_on_defaults_and_bounds() -> None:
    crd = crd_schema()["properties"]["spec"]["properties"]["retention"]["properties"]
    spec_fields = RetentionSpec.model_fields
    for name, setting in FIELDS.items():
        relay = Settings.model_fields[setting]
        bounds = {type(m).__name__: m for m in relay.metadata}
        assert crd[name]["default"] == relay.default == spec_fields[_attr(name)].default
        assert crd[name]["minimum"] == bounds["Ge"].ge
        assert crd[name]["maximum"] == bounds["Le"].le


def _attr(alias: str) -> str:
    return next(k for k, f in RetentionSpec.model_fields.items() if f.alias == alias)


def test_the_relay_gets_the_channels_retention_and_public_url() -> None:
    env = relay_env({**SPEC, "retention": {"deadLetterPayloadSeconds": 3600}})
    assert env["IGBRIDGE_RETENTION_DEAD_LETTER_PAYLOAD_SECONDS"] == "3600"
    assert env["IGBRIDGE_RETENTION_DEDUPE_SECONDS"] == "604800"  # the default, as an integer
    assert env["IGBRIDGE_PUBLIC_URL"] == "https://shop.example.com/ig"
    status = parse_spec(SPEC).retention.status()
    assert status["deadLetterSeconds"] == 30 * 86400
    assert parse_spec(SPEC).data_deletion_url == (
        "https://shop.example.com/ig/webhooks/instagram/data-deletion"
    )


def test_a_retention_the_relay_would_refuse_is_refused_on_the_channel() -> None:
    with pytest.raises(SpecProblem, match="deadLetterPayloadSeconds"):
        parse_spec(
            {**SPEC, "retention": {"deadLetterSeconds": 7200, "deadLetterPayloadSeconds": 9000}}
        )
    with pytest.raises(SpecProblem, match=r"spec\.retention\.dedupeSeconds"):
        parse_spec({**SPEC, "retention": {"dedupeSeconds": 60}})
