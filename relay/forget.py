"""``igbridge-relay forget <IGSID>``: erase everything the relay stores about one customer.

Run beside a relay (``kubectl exec deploy/<channel>-relay -- igbridge-relay forget <IGSID>``):
it opens the store the ``IGBRIDGE_*`` settings name, as a process that hands out no leases,
and removes that customer's jobs in every queue, dead letters, reply window, records,
dedupe keys containing their id and intake-log entries mentioning them
(``Store.forget_customer``). It prints what it removed, one ``kind count`` line each.
Exit status: 0 done (also when nothing was stored), 2 usage, configuration or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from .privacy import erase, valid_customer_id
from .store import StoreUnavailable
from .store_command import command_settings, on_store

OK, USAGE = 0, 2


def report(removed: dict[str, int]) -> str:
    """``jobs 3`` … one line per kind, then the total."""
    lines = [f"{kind} {count}" for kind, count in removed.items()]
    return "\n".join([*lines, f"total {sum(removed.values())}"])


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    igsid: str = args.igsid
    if not valid_customer_id(igsid):
        print("igbridge-relay forget: IGSID must be 6 to 32 digits", file=sys.stderr)
        return USAGE
    settings = command_settings()
    if settings is None:
        return USAGE
    try:
        removed = asyncio.run(
            on_store(settings, lambda store: erase(store, igsid, why="forget command"))
        )
    except StoreUnavailable as exc:
        print(f"igbridge-relay forget: {exc}", file=sys.stderr)
        return USAGE
    print(report(removed), file=out or sys.stdout)
    return OK


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "forget",
        help="erase everything stored about one customer (privacy request)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("igsid", metavar="IGSID", help="the customer's Instagram-scoped id")
    parser.set_defaults(func=run)
