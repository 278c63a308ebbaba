"""What the relay knows about its own health, for /readyz and the channel's status."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RelayHealth:
    genesys_auth_error: str | None = None
    meta_token_error: str | None = None
