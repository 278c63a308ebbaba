"""The InstagramChannel resource as relay and operator both see it: its API coordinates,
and the ``status.relay`` report that relay pods write and the operator reads.

Reading is lenient on purpose: a report from another relay version, or one edited by
hand, must neither stop a relay from reporting nor the operator from judging it. A field
that is missing or of the wrong type reads as its default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

GROUP = "igbridge.dev"
VERSION = "v1"
PLURAL = "instagramchannels"
KIND = "InstagramChannel"
API_VERSION = f"{GROUP}/{VERSION}"

HEARTBEAT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def status_path(namespace: str, name: str) -> str:
    """The channel's status subresource, which is all a relay pod may patch."""
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"


def format_heartbeat(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime(HEARTBEAT_FORMAT)


def parse_heartbeat(value: str | None) -> float | None:
    """Seconds since the epoch, or None when there is no readable time. Any ISO 8601 time
    is read (a hand-written one too); one without a zone counts as UTC."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _or_default(default: Callable[[], object]) -> WrapValidator:
    def validate(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            return default()

    return WrapValidator(validate)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _entries(value: object) -> object:
    # A pod entry that is not an object is junk: it reads as gone.
    if not isinstance(value, Mapping):
        return {}
    return {k: (v if isinstance(v, Mapping | PodEntry) else None) for k, v in value.items()}


Count = Annotated[int, _or_default(int)]
# Only an explicit false is "not ready": a pod that said nothing has nothing to complain of.
Ready = Annotated[bool, BeforeValidator(lambda value: value is not False)]
Text = Annotated[str | None, BeforeValidator(_text_or_none)]
Heartbeat = Annotated[str | None, _or_default(lambda: None)]
GuardCounts = Annotated[dict[str, Count], _or_default(dict)]


class _Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    @classmethod
    def read(cls, raw: object) -> Self:
        """Whatever was found in the status, as this model; never raises."""
        return cls.model_validate(dict(raw) if isinstance(raw, Mapping) else {})

    def wire(self) -> dict[str, Any]:
        """As it is written into the status (JSON names; null removes a key)."""
        return self.model_dump(by_alias=True)


class PodEntry(_Report):
    """``status.relay.pods[<pod>]``: what one pod says about itself."""

    last_heartbeat: Heartbeat = Field(default=None, alias="lastHeartbeat")
    ready: Ready = True
    last_error: Text = Field(default=None, alias="lastError")
    messages_in: Count = Field(default=0, alias="messagesIn")
    messages_out: Count = Field(default=0, alias="messagesOut")
    # What the guard did, by outcome (spamDropped, loopsDetected, ...).
    guard: GuardCounts = Field(default_factory=dict)


class PodReport(PodEntry):
    """One pod's report before it is merged with what the other pods wrote."""

    pod: Text = None
    # From the shared store: the same whichever pod reports.
    queue_depth: Count = Field(default=0, alias="queueDepth")
    dead_letters: Count = Field(default=0, alias="deadLetters")
    near_window_end: Count = Field(default=0, alias="nearWindowEnd")

    def entry(self) -> PodEntry:
        return PodEntry.model_validate(
            {name: getattr(self, name) for name in PodEntry.model_fields}
        )


class RelayReport(PodReport):
    """``status.relay``: the channel-wide summary, with each reporting pod's own entry."""

    replicas: Count = 0
    pods: Annotated[dict[str, PodEntry | None], BeforeValidator(_entries)] = Field(
        default_factory=dict
    )


def merge_pod_report(
    pod: str, own: Mapping[str, Any], current: Mapping[str, Any], *, stale_after: float
) -> dict[str, Any]:
    """The ``status.relay`` merge patch for this pod, given the ``status.relay`` it read.

    Counters are summed over the pods that still report, ready only if all of them are;
    an entry older than ``stale_after`` (or unreadable) belongs to a pod that is gone and
    is removed."""
    report = PodReport.read(own)
    now = parse_heartbeat(report.last_heartbeat) or time.time()
    mine = report.entry()
    patch_pods: dict[str, PodEntry | None] = {pod: mine}
    fresh: dict[str, PodEntry] = {pod: mine}
    for name, entry in RelayReport.read(current).pods.items():
        if name == pod:
            continue
        beat = parse_heartbeat(entry.last_heartbeat) if entry is not None else None
        if entry is None or beat is None or now - beat > stale_after:
            patch_pods[name] = None  # null in a merge patch removes the key
        else:
            fresh[name] = entry
    unready = sorted(name for name, entry in fresh.items() if not entry.ready)
    guard: dict[str, int] = {}
    for entry in fresh.values():
        for key, value in entry.guard.items():
            guard[key] = guard.get(key, 0) + value
    summary = {
        **report.model_dump(),
        "pod": pod,
        "ready": not unready,
        "last_error": f"{unready[0]}: {fresh[unready[0]].last_error}" if unready else None,
        "messages_in": sum(e.messages_in for e in fresh.values()),
        "messages_out": sum(e.messages_out for e in fresh.values()),
        "guard": guard,
        "replicas": len(fresh),
        "pods": patch_pods,
    }
    return RelayReport.model_validate(summary).wire()
