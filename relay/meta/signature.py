"""Meta's webhook signatures: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body)>``."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from enum import StrEnum

PREFIX = "sha256="
HEX_DIGITS = frozenset("0123456789abcdef")


class SignatureCheck(StrEnum):
    OK = "ok"
    MISSING = "missing"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


def sign_meta(raw_body: bytes, secret: bytes) -> str:
    return PREFIX + hmac.new(secret, raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(
    raw_body: bytes, header: str | None, secrets: Sequence[bytes]
) -> SignatureCheck:
    """Check the header against every valid secret (several during rotation).

    The raw bytes are hashed as received: Meta signs its ``\\uXXXX``-escaped JSON, so a
    re-serialised object would not match.
    """
    if not header:
        return SignatureCheck.MISSING
    header = header.strip()
    if not header.lower().startswith(PREFIX):
        return SignatureCheck.MALFORMED
    given = header[len(PREFIX) :].lower()
    if len(given) != 64 or not HEX_DIGITS.issuperset(given):
        return SignatureCheck.MALFORMED
    ok = False
    for secret in secrets:
        expected = hmac.new(secret, raw_body, hashlib.sha256).hexdigest()
        # No early exit: the time taken does not depend on which secret matched.
        ok |= hmac.compare_digest(expected, given)
    return SignatureCheck.OK if ok else SignatureCheck.MISMATCH


def verify_token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison for the GET handshake's ``hub.verify_token``."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
