"""``igbridge-relay``: run the relay (``serve``) or the self-contained demo (``sandbox``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import uvicorn

from .config import ConfigError, load_settings
from .logs import configure_logging


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"igbridge-relay: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from .app import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from igbridge.sandbox.demo import run_demo

    configure_logging("WARNING")
    return run_demo(keep_running=args.keep_running, port=args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="igbridge-relay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay (configured by IGBRIDGE_* variables)")
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(func=_serve)
    sandbox = sub.add_parser(
        "sandbox",
        help="start the relay with the built-in Meta and Genesys simulators on loopback "
        "and play a short conversation",
    )
    sandbox.add_argument("--port", type=int, default=0, help="relay port (default: a free one)")
    sandbox.add_argument(
        "--keep-running", action="store_true", help="stay up after the conversation (Ctrl-C ends)"
    )
    sandbox.set_defaults(func=_sandbox)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
