"""One InstagramChannel as the reconciler sees it: what kopf hands over, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]
    annotations: dict[str, str]
