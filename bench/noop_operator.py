"""The floor for the operator benchmark: kopf with a handler that does nothing, watching the
same InstagramChannels on the same cluster emulator (``kopf run`` loads this file)."""

from __future__ import annotations

from typing import Any

import kopf

from igbridge.relay.channel_status import GROUP, PLURAL, VERSION


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # As for igbridge-operator --namespace: the emulator cannot list namespaces.
    settings.scanning.disabled = True


@kopf.on.create(GROUP, VERSION, PLURAL)
def noop(**_: Any) -> dict[str, bool]:
    return {"done": True}  # kopf stores it in status.noop: that is how the bench sees it
