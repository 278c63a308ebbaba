"""``igbridge-relay dead-letters list|show|replay|purge``: what the relay could not deliver.

An operator's tool, run beside a relay (``kubectl exec`` into its pod): it opens the store
the same ``IGBRIDGE_*`` settings name, as a process that hands out no leases, so it never
disturbs the running relay's jobs. A replayed dead letter is an ordinary job again; the
relay's workers poll their queues, so it is delivered without a restart or a signal.

``list`` prints no message text (a terminal's scrollback and a ticket are not where
customers' words belong); ``show`` does, as JSON: looking at one is the operator's choice.

Dead-letter ids are unique per queue (SQLite numbers them across queues, Redis per queue),
so an id found in more than one queue needs ``--queue``. Exit status: 0 done, 1 no such
dead letter, 2 usage, configuration or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from .records import QUEUES
from .store import DeadLetter, Store, StoreUnavailable
from .store.base import INTAKE
from .store_command import command_settings, on_store

ALL_QUEUES = (*QUEUES, INTAKE)
OK, NOT_FOUND, USAGE = 0, 1, 2
# What a reason may show in ``list``: one line, and never a whole error body.
REASON_CHARS = 160

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """``90`` (seconds), ``45s``, ``30m``, ``12h``, ``7d``, ``2w`` or a sum such as ``1d12h``
    → seconds. Raises ValueError for anything else."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or _DURATION.sub("", text):
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 30m, 12h, 7d)")
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_line(letter: DeadLetter) -> str:
    """One dead letter as a line of ``list``: everything but the message."""
    reason = " ".join(letter.reason.split())
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return "\t".join(
        (
            str(letter.id),
            letter.queue,
            letter.key or "-",
            str(letter.attempts),
            _when(letter.failed_at),
            reason,
        )
    )


LIST_HEADER = "\t".join(("ID", "QUEUE", "CUSTOMER", "ATTEMPTS", "FAILED_AT", "REASON"))


def show_document(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter with its payload, for ``show`` (the payload parsed when it is JSON,
    as it was stored otherwise: an unreadable webhook may be neither JSON nor UTF-8)."""
    doc: dict[str, Any] = {
        "id": letter.id,
        "queue": letter.queue,
        "customer": letter.key,
        "dedupeKey": letter.dedupe_key,
        "orderTs": letter.order_ts,
        "attempts": letter.attempts,
        "failedAt": _when(letter.failed_at),
        "reason": letter.reason,
    }
    if not letter.payload:
        doc["payload"] = None  # blanked after its retention period
        return doc
    try:
        doc["payload"] = json.loads(letter.payload)
    except ValueError:
        doc["payloadRaw"] = letter.payload.decode("utf-8", "backslashreplace")
    return doc


class _Failed(Exception):
    """Ends the command with this status after its message was printed."""

    def __init__(self, status: int) -> None:
        self.status = status


def _err(message: str, status: int) -> _Failed:
    print(f"igbridge-relay dead-letters: {message}", file=sys.stderr)
    return _Failed(status)


async def _locate(store: Store, dead_id: int, queue: str | None) -> DeadLetter:
    found = [
        letter
        for q in ((queue,) if queue else ALL_QUEUES)
        if (letter := await store.find_dead_letter(q, dead_id)) is not None
    ]
    if not found:
        where = f"in queue {queue}" if queue else "in any queue"
        raise _err(f"no dead letter {dead_id} {where}", NOT_FOUND)
    if len(found) > 1:
        queues = " and ".join(letter.queue for letter in found)
        raise _err(f"dead letter {dead_id} exists in {queues}: name one with --queue", USAGE)
    return found[0]


async def _list(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    letters: list[DeadLetter] = []
    for queue in (args.queue,) if args.queue else ALL_QUEUES:
        letters += await store.dead_letters(queue, args.limit)
    letters.sort(key=lambda d: d.failed_at, reverse=True)
    print(LIST_HEADER, file=out)
    for letter in letters[: args.limit]:
        print(list_line(letter), file=out)
    return OK


async def _show(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    letter = await _locate(store, args.id, args.queue)
    print(json.dumps(show_document(letter), indent=2, ensure_ascii=False), file=out)
    return OK


async def _replay(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if args.id is not None:
        letter = await _locate(store, args.id, args.queue)
        if letter.queue == INTAKE:
            raise _err(
                f"dead letter {letter.id} is a webhook that could not be read, not a message:"
                " it cannot be replayed (show it, then purge it)",
                USAGE,
            )
        if not letter.payload:
            raise _err(
                f"dead letter {letter.id}'s message was blanked after its retention period:"
                " it cannot be replayed (purge it)",
                USAGE,
            )
        if not await store.replay_dead_letter(letter.queue, letter.id):
            raise _err(f"no dead letter {letter.id} in queue {letter.queue}", NOT_FOUND)
        print(f"replayed {letter.queue} {letter.id}", file=out)
        return OK
    total = skipped = 0
    for queue in (args.queue,) if args.queue else QUEUES:
        if queue == INTAKE:
            raise _err("intake dead letters are unreadable webhooks: none can be replayed", USAGE)
        # Oldest first: the relay may deliver the first replayed before the next is back,
        # so a customer's replays must go back in the order they failed.
        letters = await store.dead_letters(queue, max(1, await store.dead_letter_count(queue)))
        for letter in reversed(letters):
            if await store.replay_dead_letter(queue, letter.id):
                total += 1
            else:
                skipped += 1  # its text was blanked (retention), or it went meanwhile
    print(
        f"replayed {total}" + (f", {skipped} not replayable (purge them)" if skipped else ""),
        file=out,
    )
    return OK


async def _purge(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    older: float | None = args.older_than
    if args.id is not None:
        letter = await _locate(store, args.id, args.queue)
        if not await store.purge_dead_letters(letter.queue, [letter.id], older):
            raise _err(f"dead letter {letter.id} is not older than --older-than", NOT_FOUND)
        print(f"purged {letter.queue} {letter.id}", file=out)
        return OK
    total = 0
    for queue in (args.queue,) if args.queue else ALL_QUEUES:
        total += await store.purge_dead_letters(queue, None, older)
    print(f"purged {total}", file=out)
    return OK


Action = Callable[[Store, argparse.Namespace, TextIO], Awaitable[int]]
ACTIONS: dict[str, Action] = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """The ``dead-letters`` command: its exit status."""
    if args.action in ("replay", "purge") and (args.id is None) == (not args.all):
        print(
            f"igbridge-relay dead-letters {args.action}: give an ID or --all, not both",
            file=sys.stderr,
        )
        return USAGE
    settings = command_settings()
    if settings is None:
        return USAGE
    action = ACTIONS[args.action]
    try:
        return asyncio.run(on_store(settings, lambda store: action(store, args, out)))
    except _Failed as failed:
        return failed.status
    except StoreUnavailable as exc:
        print(f"igbridge-relay dead-letters: store error: {exc}", file=sys.stderr)
        return USAGE


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_parser(sub: Any) -> None:
    """Add ``dead-letters`` and its actions to the command's subparsers."""
    group = sub.add_parser(
        "dead-letters",
        help="list, show, replay or purge what the relay could not deliver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = group.add_subparsers(dest="action", required=True)
    queue_help = f"only this queue ({', '.join(ALL_QUEUES)})"

    def with_queue(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--queue", choices=ALL_QUEUES, help=queue_help)
        return parser

    listing = with_queue(actions.add_parser("list", help="one line each, newest first; no text"))
    listing.add_argument("--limit", type=_positive, default=100, help="at most N (default 100)")
    show = with_queue(actions.add_parser("show", help="one dead letter with its message, as JSON"))
    show.add_argument("id", type=int, metavar="ID")
    replay = with_queue(
        actions.add_parser("replay", help="put back into its queue as a new job (order kept)")
    )
    purge = with_queue(actions.add_parser("purge", help="delete"))
    purge.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="only those failed longer ago than this (90, 30m, 12h, 7d)",
    )
    for parser in (replay, purge):
        parser.add_argument("id", type=int, nargs="?", metavar="ID")
        parser.add_argument("--all", action="store_true", help="every dead letter (of --queue)")
    group.set_defaults(func=run)
