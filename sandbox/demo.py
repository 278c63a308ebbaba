"""``igbridge-relay sandbox``: the relay between the Meta and Genesys simulators (and a
small CRM), on loopback, playing a conversation a person can watch (story.py) or serving
the live console (console.py).

The simulators control every timestamp, so "25 hours later" takes no time: a customer's
message is simply dated 25 hours ago, and Meta's window rules and the relay's agree.
"""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .crm_sim import CRM_TOKEN, CrmSimulator
from .relay_server import RelayThread
from .server import LOOPBACK, ThreadedServer, serve_in_thread
from .stack import Sandbox, run_relay, run_sandbox

CUSTOMER = "6915500000000001"  # Ana: DMs, a photo, a story mention, quick replies
FAN = "6915500000000003"  # Maria: a comment on a post
LATE = "6915500000000004"  # Leo: last wrote 25 hours ago
WAITING = "6915500000000005"  # Sofia: waiting 21 hours, nobody answered
SPAMMER = "6915500000000006"
SPAM_KEYWORD = "free followers"
# Sandbox data the console offers: the CDN's assets behind "send a photo" and "story".
PHOTO_ASSET = "5001"
STORY_ASSET = "5002"


@dataclass
class DemoStack:
    sb: Sandbox
    relay: RelayThread
    crm: CrmSimulator
    crm_server: ThreadedServer
    work: Path


class PortInUse(Exception):
    """A port the user asked for is taken (said in one line, no traceback)."""


def check_port_free(port: int) -> None:
    """Raise PortInUse when 127.0.0.1:``port`` cannot be bound (0: any free one)."""
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {LOOPBACK} is already in use") from None
            raise PortInUse(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}") from None


def _seed(sb: Sandbox, crm: CrmSimulator) -> None:
    sb.meta.add_media(PHOTO_ASSET, "image/jpeg")
    sb.meta.add_media(STORY_ASSET, "video/mp4")
    sb.meta.add_user(
        CUSTOMER, "ana.customer", name="Ana Lima", follower_count=1520, is_user_follow_business=True
    )
    sb.meta.add_user(FAN, "maria_s", name="Maria Souza", follower_count=48_200)
    sb.meta.add_user(LATE, "leo.m", name="Leo Martin", follower_count=310)
    sb.meta.add_user(WAITING, "sofia.r", name="Sofia Rossi", follower_count=2_300_000)
    sb.meta.add_user(SPAMMER, "gr0wth.hacks", follower_count=3)
    crm.add_customer(CUSTOMER, CustomerTier="Gold", LastOrder="#4512", Language="pt-BR")
    crm.add_customer(FAN, CustomerTier="New")
    crm.add_customer(WAITING, CustomerTier="VIP", AccountManager="Jo")


@contextmanager
def demo_stack(work: Path, port: int = 0) -> Iterator[DemoStack]:
    """Simulators, CRM and relay on loopback, with the demo's customers."""
    guard = {"keywords": [SPAM_KEYWORD], "blockLinkOnly": True, "action": "drop"}
    with ExitStack() as stack:
        sb = stack.enter_context(run_sandbox(work))
        crm = CrmSimulator()
        crm_server = stack.enter_context(serve_in_thread(crm.app))
        _seed(sb, crm)
        env = sb.relay_env(
            work / "igbridge.db",
            IGBRIDGE_CRM_URL=f"{crm_server.url}/lookup",
            IGBRIDGE_CRM_TOKEN=CRM_TOKEN,
            IGBRIDGE_GUARD=json.dumps(guard),
            # The sweeper looks often so an escalation shows within the demo's seconds.
            IGBRIDGE_SLA_SWEEP_SECONDS="0.2",
        )
        relay = stack.enter_context(run_relay(env, port=port))
        yield DemoStack(sb, relay, crm, crm_server, work)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``with`` unwinds and the temp dir goes."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_for_interrupt() -> None:
    """Until Ctrl-C or SIGTERM: the caller suppresses the KeyboardInterrupt from before it
    announces the wait, so a stop sent as soon as the announcement is read ends cleanly."""
    stop = threading.Event()
    while not stop.wait(1.0):  # short waits: signals are handled between them
        pass


def run_demo(
    *, keep_running: bool = False, port: int = 0, console: bool = False, console_port: int = 0
) -> int:
    from .story import play, say

    check_port_free(port)
    check_port_free(console_port)
    with _sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="igbridge-sandbox-") as tmp:
        try:
            with demo_stack(Path(tmp), port=port) as demo:
                if console:
                    from .console import Console

                    with (
                        Console(demo).serving(port=console_port) as url,
                        contextlib.suppress(KeyboardInterrupt),
                    ):
                        say(f"igbridge sandbox console: open {url}  (loopback only; Ctrl-C stops)")
                        _wait_for_interrupt()
                    return 0
                ok = play(demo)
                if keep_running:
                    with contextlib.suppress(KeyboardInterrupt):
                        say("Still running at the addresses above; Ctrl-C stops everything.")
                        _wait_for_interrupt()
                else:
                    say(
                        "All servers have stopped. `igbridge-relay sandbox --keep-running` keeps "
                        "them up; `--console` opens the live console."
                    )
                return 0 if ok else 1
        except KeyboardInterrupt as stopped:  # before the story ended: say so by the code
            return 128 + (signal.SIGTERM if isinstance(stopped, _Terminated) else signal.SIGINT)
