"""Both platforms' webhook signatures, checked over the raw bytes as received.

Meta: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``; Genesys: the same header with the
digest in base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
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
        # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object per call.
        expected = hmac.digest(secret, raw_body, "sha256").hex()
        # No early exit: the time taken does not depend on which secret matched.
        ok |= hmac.compare_digest(expected, given)
    return SignatureCheck.OK if ok else SignatureCheck.MISMATCH


def verify_token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison for the GET handshake's ``hub.verify_token``."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _digest(body: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def verify_genesys_signature(raw: bytes, header: str | None, secret: bytes) -> SignatureCheck:
    """Check Genesys's base64 signature over the raw bytes.

    Genesys's own sample hashes the compact JSON; if that ever differs from the bytes on
    the wire, the compact form of the same body is accepted too (still under the secret).
    """
    if not header:
        return SignatureCheck.MISSING
    header = header.strip()
    if not header.startswith(PREFIX):
        return SignatureCheck.MALFORMED
    try:
        given = base64.b64decode(header[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return SignatureCheck.MALFORMED
    if len(given) != hashlib.sha256().digest_size:
        return SignatureCheck.MALFORMED
    if hmac.compare_digest(_digest(raw, secret), given):
        return SignatureCheck.OK
    try:
        compact = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return SignatureCheck.MISMATCH
    if compact != raw and hmac.compare_digest(_digest(compact, secret), given):
        return SignatureCheck.OK
    return SignatureCheck.MISMATCH
