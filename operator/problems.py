"""The reconciler's two kinds of "not now", each saying what the status should show, and
the "never mind" of a channel being deleted.

A problem carries its condition and reason as data, so the status is set from what went
wrong, never from how the message happens to be worded."""

from __future__ import annotations


class RetryLater(Exception):
    """Something outside our control is not ready; try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Deleting(Exception):
    """The channel's deletion has begun: the reconcile stops where it is, creating and
    writing nothing more."""


class SpecProblem(Exception):
    """The spec (or a referenced Secret) must change before retrying can help.

    ``condition`` is the condition that turns False for it, with ``reason``; the message
    says what to fix."""

    def __init__(self, condition: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.condition = condition
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"SpecProblem({self.condition!r}, {self.reason!r}, {self.message!r})"


def invalid_spec(message: str) -> SpecProblem:
    return SpecProblem("Synced", "InvalidSpec", message)


def secret_missing(message: str) -> SpecProblem:
    return SpecProblem("CredentialsReady", "SecretMissing", message)


def secret_key_missing(message: str) -> SpecProblem:
    return SpecProblem("CredentialsReady", "SecretKeyMissing", message)


def credentials_refused(message: str) -> SpecProblem:
    """Genesys refused the OAuth client (rotated, deleted, or a typo in the Secret)."""
    return SpecProblem("CredentialsReady", "CredentialsRefused", message)


def token_invalid(message: str) -> SpecProblem:
    """Meta answered code 190: the access token expired, was revoked or is not a token."""
    return SpecProblem("CredentialsReady", "TokenInvalid", message)


def token_for_other_account(message: str) -> SpecProblem:
    return SpecProblem("CredentialsReady", "TokenForOtherAccount", message)


def token_missing_permissions(message: str) -> SpecProblem:
    return SpecProblem("CredentialsReady", "TokenMissingPermissions", message)


def public_url_not_https(message: str) -> SpecProblem:
    # Meta calls webhooks only over https, and Genesys requires it for its webhook URL.
    return SpecProblem("CredentialsReady", "PublicUrlNotHttps", message)
