"""Kubernetes Events about a channel, so ``kubectl describe igch`` tells the story.

Emitted on changes only — a provisioning step that did something, a condition that
changed status or reason — never on a resync that found everything as it was. Which
events a status change makes is decided here from data; handlers.py posts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .conditions import TRUE

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    reason: str
    message: str


Emit = Callable[[Event], None]


def no_events(_: Event) -> None:
    """For callers (and tests of the reconciler alone) that post none."""


def normal(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


def warning(reason: str, message: str) -> Event:
    return Event("Warning", reason, message)


def _by_type(conditions: Iterable[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in conditions or [] if isinstance(c, Mapping)}


def transitions(
    old: Iterable[Mapping[str, Any]] | None, new: Iterable[Mapping[str, Any]]
) -> list[Event]:
    """One event per condition whose status or reason changed: Normal when it turned
    True, Warning otherwise. The reason is the condition's (what to look up), the message
    names the condition and says what it says now."""
    before = _by_type(old)
    events = []
    for kind, cond in _by_type(new).items():
        prev = before.get(kind) or {}
        status, reason = cond.get("status"), str(cond.get("reason") or kind)
        if (prev.get("status"), prev.get("reason")) == (status, cond.get("reason")):
            continue
        text = f"{kind}={status}: {cond.get('message') or reason}"
        events.append(normal(reason, text) if status == TRUE else warning(reason, text))
    return events
