"""``RelayAvailable`` judged from the relay's report in ``status.relay``."""

from __future__ import annotations

from dataclasses import dataclass

from igbridge.relay.channel_status import RelayReport, parse_heartbeat

from .conditions import FALSE, TRUE, UNKNOWN


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    reason: str
    message: str


def relay_available(report: RelayReport, *, now: float, grace: float) -> Verdict:
    """A relay that never reported is not known yet; one silent for longer than ``grace``
    seconds (or whose heartbeat cannot be read) is not reporting; one that says it is
    not ready passes on its own error."""
    if not report.last_heartbeat:
        return Verdict(UNKNOWN, "WaitingForRelay", "the relay has not reported yet")
    beat = parse_heartbeat(report.last_heartbeat)
    age = float("inf") if beat is None else now - beat
    if age > grace:
        return Verdict(
            FALSE,
            "RelayNotReporting",
            f"no report from the relay for {age:.0f}s (grace {grace:.0f}s); check the relay pods",
        )
    if not report.ready:
        return Verdict(FALSE, "RelayNotReady", report.last_error or "the relay is not ready")
    return Verdict(TRUE, "RelayReporting", f"last report {age:.0f}s ago")
