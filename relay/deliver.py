"""The delivery process that ``serve`` starts beside the web process (see ``relay.link``):
the splitter, both queue workers and the regular tasks, woken by the web process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from .app import Delivery, Relay, freeze_start_up
from .config import Settings
from .link import WebLink
from .metrics import RelayMetrics

log = logging.getLogger(__name__)


async def deliver(settings: Settings, link_fd: int) -> None:
    """Until SIGTERM (then in-flight jobs finish or are handed back) or the web process
    is gone (then at once)."""
    link = WebLink(link_fd)
    metrics = RelayMetrics()
    r = await Relay.start(settings, metrics)
    r.health.on_change = link.send_health
    d = Delivery.start(settings, r, metrics)
    listener = asyncio.create_task(link.listen(d.splitter.wake, r.outbound.wake), name="web-link")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    freeze_start_up()
    log.info("delivery process started")
    try:
        await stop.wait()
    finally:
        await d.stop()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await r.close()
        link.close()
        log.info("delivery process stopped")
