"""Errors from talking to Genesys Cloud, sorted by what the caller should do next."""

from __future__ import annotations


class GenesysError(Exception):
    """Base class. ``str()`` is safe to log: it never contains tokens or secrets."""


class TransientError(GenesysError):
    """Try again later: 429, 5xx, timeouts, connection failures.

    ``retry_after`` is the server's Retry-After in seconds when it sent one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PermanentError(GenesysError):
    """Retrying cannot help (a 4xx other than 401/408/429): dead-letter with the reason."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class AuthError(GenesysError):
    """Client credentials were refused: the relay is not ready until this is fixed."""
