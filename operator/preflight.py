"""Pre-flight: are the channel's credentials good for messaging, decided from what Meta
answered (tokens.py does the asking). Pure: every verdict is a plain value, so each case
reads (and is tested) as data.

Secrets that merely exist are not enough: a token for another account, an expired one or
one without the messaging permissions looks fine until the first agent reply fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from .problems import (
    SpecProblem,
    public_url_not_https,
    token_for_other_account,
    token_invalid,
    token_missing_permissions,
)

# Facebook Login: what Meta's Instagram messaging needs of a Page token (reading the
# account, sending, and subscribing the Page to the webhooks).
MESSAGING_SCOPES = ("instagram_basic", "instagram_manage_messages", "pages_manage_metadata")
INVALID_TOKEN_CODE = 190


@dataclass(frozen=True, slots=True)
class GraphFailure:
    """A Graph error body (``{"error": {"code", "message", ...}}``) or an unreadable answer
    (``code`` None)."""

    status: int
    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose token it is: the Instagram account's id (with Facebook Login, the account
    linked to the token's Page; empty when the Page has none)."""

    id: str
    username: str | None = None
    page_id: str | None = None  # Facebook Login: the Page the token belongs to
    page_name: str | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """``GET /debug_token``'s ``data``. ``expires_at`` None: never (Meta answers 0)."""

    is_valid: bool
    scopes: frozenset[str]
    expires_at: int | None = None
    error_code: int | None = None
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class Refreshed:
    """``GET /refresh_access_token``: the new long-lived token and when it runs out."""

    access_token: str
    expires_at: int


def check_public_url(public_url: str) -> SpecProblem | None:
    if urlsplit(public_url).scheme.lower() != "https":
        return public_url_not_https(
            f"spec.publicUrl {public_url!r} must be https: Meta and Genesys call webhooks "
            "only over TLS"
        )
    return None


def judge_identity(
    found: Identity | GraphFailure, account_id: str, extra_ids: Iterable[str] = ()
) -> SpecProblem | None:
    """The token must be valid and belong to ``spec.instagram.accountId`` (or, with
    Instagram Login, to one of the channel's further entry ids: ``/me`` may answer the
    app-scoped user id)."""
    if isinstance(found, GraphFailure):
        if found.code == INVALID_TOKEN_CODE:
            return token_invalid(
                f"Meta refused the access token (code 190: {found.message}); put a new "
                "token in the Secret"
            )
        return None  # not a verdict on the token: Meta was down or answered oddly
    if found.page_id is not None and not found.id:
        page = f"{found.page_id} ({found.page_name})" if found.page_name else found.page_id
        return token_for_other_account(
            f"the access token is for Page {page}, which has no Instagram professional "
            f"account linked; link account {account_id} to the Page or use that Page's token"
        )
    accepted = {account_id, *extra_ids}
    if found.id not in accepted:
        who = f"{found.id} ({found.username})" if found.username else found.id
        if found.page_id is not None:
            who += f", linked to Page {found.page_id}"
        return token_for_other_account(
            f"the access token belongs to account {who}, not spec.instagram.accountId {account_id}"
        )
    return None


def judge_token_info(
    info: TokenInfo | GraphFailure, required: Iterable[str] = MESSAGING_SCOPES
) -> SpecProblem | None:
    """Facebook Login: validity and the permissions messaging needs."""
    if isinstance(info, GraphFailure):
        return None  # debug_token itself failed: no verdict on the token
    if not info.is_valid:
        why = info.error_message or "Meta says it is not valid"
        return token_invalid(f"the access token is not valid: {why}; put a new token in the Secret")
    missing = [s for s in required if s not in info.scopes]
    if missing:
        return token_missing_permissions(
            f"the access token lacks {', '.join(missing)}: grant them in the app and issue "
            "a new token"
        )
    return None


def refresh_due(expires_at: float | None, now: float, margin: float) -> bool:
    """Instagram Login: refresh when the expiry is unknown (a token someone put in the
    Secret, whose age only Meta knows) or within ``margin`` seconds."""
    return expires_at is None or expires_at - now <= margin


def expiring(expires_at: float | None, now: float, margin: float) -> bool:
    return expires_at is not None and expires_at - now <= margin


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
