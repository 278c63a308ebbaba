"""Status conditions per Kubernetes conventions: type, status, reason, message, and the
time the status last changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
# Ready is True when all of these are.
READY_PARTS = ("CredentialsReady", "IntegrationReady", "Synced", "RelayAvailable")


def now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Conditions:
    """Builds the new condition list from the old one, keeping transition times."""

    def __init__(self, previous: list[dict[str, Any]] | None, generation: int | None) -> None:
        self._old = {c.get("type"): c for c in previous or [] if isinstance(c, dict)}
        self._new: dict[str, dict[str, Any]] = {}
        self._generation = generation

    def set(self, kind: str, status: str, reason: str, message: str = "") -> None:
        old = self._old.get(kind)
        changed = old is None or old.get("status") != status
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": (
                # The CRD requires it: one lost from an older status is restarted now.
                now_iso() if changed or old is None else old.get("lastTransitionTime") or now_iso()
            ),
        }
        if self._generation is not None:
            condition["observedGeneration"] = self._generation
        self._new[kind] = condition

    def get(self, kind: str) -> dict[str, Any] | None:
        return self._new.get(kind) or self._old.get(kind)

    def keep(self, kind: str) -> None:
        if kind not in self._new and kind in self._old:
            self._new[kind] = self._old[kind]

    def finish(self, extra_ready_parts: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        for kind in self._old:
            if isinstance(kind, str):
                self.keep(kind)
        missing = [
            part
            for part in READY_PARTS + extra_ready_parts
            if (self.get(part) or {}).get("status") != TRUE
        ]
        if missing:
            first = self.get(missing[0]) or {}
            self.set(
                "Ready",
                FALSE,
                str(first.get("reason") or "Waiting"),
                f"{missing[0]}: {first.get('message') or 'not yet known'}",
            )
        else:
            self.set("Ready", TRUE, "ChannelReady", "Instagram messages flow to Genesys and back")
        order = ["Ready", *READY_PARTS, "WebhookSubscribed"]
        return sorted(
            self._new.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 99
        )
