"""``igbridge-relay``: run the relay (``serve``) or the self-contained demo (``sandbox``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from types import FrameType

import uvicorn
import uvloop

from . import dead_letters, forget
from .config import ConfigError, Settings, load_settings
from .link import DELIVER_COMMAND, MULTIPROCESS_DIR
from .logs import configure_logging
from .version import VERSION

log = logging.getLogger(__name__)


def _settings() -> Settings | None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"igbridge-relay: configuration error: {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level)
    return settings


def _sqlite_problem(settings: Settings) -> str | None:
    """Why the SQLite file cannot be opened (corrupt, unreadable, read-only), or None.

    Asked before the server starts, so such a file ends start-up with one line and exit 1
    instead of a traceback from inside the server's start-up. Only SQLite: a file that
    will not open stays so, while a Redis that does not answer yet may come back."""
    if not settings.store_url.startswith("sqlite:///"):
        return None
    from .store import StoreUnavailable, open_store

    async def probe() -> None:
        store = open_store(settings.store_url, claims=False)  # hands out no leases
        await store.open()
        await store.close()

    try:
        asyncio.run(probe())
    except StoreUnavailable as exc:
        return str(exc)
    return None


def _serve(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    admin_port: int = settings.admin_port if args.admin_port is None else args.admin_port
    if admin_port == args.port:
        print(
            f"igbridge-relay: the admin port ({admin_port}) must differ from --port",
            file=sys.stderr,
        )
        return 2
    from .web.listen import PortInUse, bind_socket

    try:
        web_socket = bind_socket(args.host, args.port)
    except PortInUse as exc:
        print(f"igbridge-relay: {exc}", file=sys.stderr)
        return 1
    try:
        admin_socket = bind_socket(args.host, admin_port)
    except PortInUse as exc:
        web_socket.close()
        print(f"igbridge-relay: admin port: {exc}", file=sys.stderr)
        return 1
    with web_socket, admin_socket:
        return _serve_on(args, settings, web_socket, admin_socket)


def _serve_on(
    args: argparse.Namespace,
    settings: Settings,
    web_socket: socket.socket,
    admin_socket: socket.socket,
) -> int:
    folder = None
    if args.delivery == "process":
        # Before prometheus_client is imported: both processes count into this folder.
        folder = tempfile.mkdtemp(prefix="igbridge-metrics-")
        os.environ[MULTIPROCESS_DIR] = folder
    problem = _sqlite_problem(settings)
    if problem is not None:
        print(f"igbridge-relay: store error: {problem}", file=sys.stderr)
        return 1
    from .app import create_app
    from .web.server import (
        ADMIN_MAX_CONNECTIONS,
        ConnectionGuard,
        RelayServer,
        fd_limit,
        plan_limits,
        serve_pair,
    )

    app = create_app(settings, delivery=args.delivery)
    # The admin port's few connections come out of the open-files budget first.
    admin_limits = plan_limits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=ADMIN_MAX_CONNECTIONS,
        fd_limit=fd_limit(),
    )
    limits = plan_limits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections,
        fd_limit=fd_limit() - admin_limits.hard_cap,
    )
    if limits.max_connections < settings.max_connections:
        log.warning(
            "IGBRIDGE_MAX_CONNECTIONS lowered to fit the open-files limit",
            extra={"max_connections": limits.max_connections, "fd_limit": fd_limit()},
        )
    guard = ConnectionGuard(limits, app.state.registry)
    admin_guard = ConnectionGuard(admin_limits, closed=guard.closed)
    server = RelayServer(
        uvicorn.Config(
            app,
            http=guard.protocol(),
            ws="none",  # no WebSocket routes: an Upgrade header is just a header
            timeout_keep_alive=settings.keep_alive_timeout,
            log_config=None,
            access_log=False,  # a line per webhook; the relay's own lines carry what matters
            timeout_graceful_shutdown=10,
        )
    )
    admin = RelayServer(
        uvicorn.Config(
            app.state.admin,
            http=admin_guard.protocol(),
            ws="none",
            lifespan="off",  # the webhook server runs the app's start-up and shutdown
            timeout_keep_alive=settings.keep_alive_timeout,
            log_config=None,
            access_log=False,  # a line per probe and scrape would drown the rest
            timeout_graceful_shutdown=5,
        )
    )
    # The app stops the server itself when its delivery process dies (then exit 1).
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    log.info(
        "listening",
        extra={"port": web_socket.getsockname()[1], "admin_port": admin_socket.getsockname()[1]},
    )
    # uvicorn raises SIGTERM/SIGINT again once it has shut down gracefully; with the
    # default handlers the process would die of it before the clean-up below.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_quietly)
    try:
        uvloop.run(serve_pair(server, admin, web_socket, admin_socket))
    except SystemExit:
        pass  # a stop signal after the graceful shutdown: a clean exit
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if getattr(app.state, "delivery_exit_code", None) is not None:
        print("igbridge-relay: the delivery process exited; stopped", file=sys.stderr)
        return 1
    return 0


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _deliver(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    from .deliver import deliver
    from .store import StoreUnavailable

    try:
        uvloop.run(deliver(settings, args.link_fd))
    except StoreUnavailable as exc:  # at start-up: running, a store error is retried
        print(f"igbridge-relay: store error: {exc}", file=sys.stderr)
        return 1
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from igbridge.sandbox.demo import PortInUse, run_demo

    configure_logging("WARNING")
    try:
        return run_demo(
            keep_running=args.keep_running,
            port=args.port,
            console=args.console,
            console_port=args.console_port,
        )
    except PortInUse as exc:
        print(f"igbridge-relay sandbox: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="igbridge-relay", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay (configured by IGBRIDGE_* variables)")
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=8080, help="webhook port (default 8080)")
    serve.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="port of /healthz, /readyz and /metrics, same address "
        "(default: IGBRIDGE_ADMIN_PORT, else 9090)",
    )
    serve.add_argument(
        "--delivery",
        choices=("process", "inline"),
        default="process",
        help="deliver in a second process (default: the ack path keeps a core of its own) "
        "or in this one",
    )
    serve.set_defaults(func=_serve)
    deliver = sub.add_parser(DELIVER_COMMAND, help=argparse.SUPPRESS)
    deliver.add_argument("--link-fd", type=int, required=True)
    deliver.set_defaults(func=_deliver)
    sandbox = sub.add_parser(
        "sandbox",
        help="start the relay with the built-in Meta and Genesys simulators on loopback "
        "and play a short conversation",
    )
    sandbox.add_argument("--port", type=int, default=0, help="relay port (default: a free one)")
    sandbox.add_argument(
        "--keep-running", action="store_true", help="stay up after the conversation (Ctrl-C ends)"
    )
    sandbox.add_argument(
        "--console",
        action="store_true",
        help="instead of the scripted conversation, serve a web console to play the customer "
        "and the agent yourself (Ctrl-C ends)",
    )
    sandbox.add_argument(
        "--console-port", type=int, default=0, help="console port (default: a free one)"
    )
    sandbox.set_defaults(func=_sandbox)
    dead_letters.add_parser(sub)
    forget.add_parser(sub)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
