from __future__ import annotations

import json

import pytest

from igbridge.relay.web.signature import (
    SignatureCheck,
    sign_meta,
    verify_meta_signature,
    verify_token_matches,
)
from tests.fixtures_loader import load_fixture

RAW = load_fixture("text_escaped")


def test_valid_signature_over_raw_bytes() -> None:
    assert verify_meta_signature(RAW, sign_meta(RAW, b"s1"), [b"s1"]) is SignatureCheck.OK


def test_any_of_several_secrets_during_rotation() -> None:
    header = sign_meta(RAW, b"new")
    assert verify_meta_signature(RAW, header, [b"old", b"new"]) is SignatureCheck.OK
    assert verify_meta_signature(RAW, header.upper().replace("SHA256=", "sha256="), [b"new"]) is (
        SignatureCheck.OK
    )


def test_wrong_secret_is_a_mismatch() -> None:
    assert verify_meta_signature(RAW, sign_meta(RAW, b"x"), [b"s1"]) is SignatureCheck.MISMATCH


@pytest.mark.parametrize("header", [None, ""])
def test_missing(header: str | None) -> None:
    assert verify_meta_signature(RAW, header, [b"s1"]) is SignatureCheck.MISSING


@pytest.mark.parametrize(
    "header",
    ["abc", "sha1=" + "0" * 40, "sha256=" + "z" * 64, "sha256=" + "0" * 63, "sha256=", "sha256"],
)
def test_malformed(header: str) -> None:
    assert verify_meta_signature(RAW, header, [b"s1"]) is SignatureCheck.MALFORMED


def test_reserialised_body_does_not_verify() -> None:
    """Meta signs its \\u-escaped bytes; hashing a re-encoded object would break on emoji."""
    header = sign_meta(RAW, b"s1")
    reencoded = json.dumps(json.loads(RAW), ensure_ascii=False).encode("utf-8")
    assert verify_meta_signature(reencoded, header, [b"s1"]) is SignatureCheck.MISMATCH


def test_verify_token() -> None:
    assert verify_token_matches("tok", "tok")
    assert not verify_token_matches("tok2", "tok")
    assert not verify_token_matches(None, "tok")
