"""Everything the relay keeps in its store, named in one place: the two queues, and every
record with its namespace, its typed value, how it is encoded and how long it lives.

Records are small per-key values beside the queues (the queue rows themselves belong to
the store backends). The JSON shapes are those earlier versions wrote, so a relay upgraded
in place, or replicas of two versions during a rollout, read each other's records.

``change`` is the one compare-and-set loop: every record that several workers or replicas
may touch at once (a customer's SLA state, the guard's counters, the channel's totals)
goes through it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .pipeline.window import CommentOrigin
from .store.base import INTAKE as INTAKE
from .store.base import Store, StoreUnavailable

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# -- queues ----------------------------------------------------------------------------
INBOUND = "inbound"  # Instagram events on their way to Genesys
OUTBOUND = "outbound"  # agents' messages on their way to Instagram
QUEUES = (INBOUND, OUTBOUND)
# Signed Instagram webhooks as they arrived, before they are parsed into their events,
# are the intake log (Store.append_intake), not a queue: the ack appends the raw bytes,
# the delivery side splits them into INBOUND jobs. INTAKE names it in metrics and files
# the entries that could not be split among the dead letters.
DEAD_LETTER_SOURCES = (INTAKE, INBOUND, OUTBOUND)
SPLITTER = "splitter"  # which replica splits the intake log (one at a time)
# Meta retries a webhook for up to 36 hours; a week of remembered ids covers that (and
# Genesys's redeliveries of an agent's message).
DEDUPE_RETENTION_SECONDS = 7 * 86400.0
DEAD_LETTER_RETENTION_SECONDS = 30 * 86400.0

# Progress and the relay's own message ids matter while Genesys may redeliver a reply and
# Meta may echo it; a week covers both (the queues' dedupe keys are kept as long).
WEEK_SECONDS = 7 * 24 * 3600.0
# Per-customer state is kept only as long as it can still matter, so the store does not
# grow with every customer ever seen (each is forgotten that long after it last changed):
# - their latest message time (Meta's reply windows): the longest reply Meta allows after
#   it is the HUMAN_AGENT tag's 7 days;
WINDOW_RETENTION_SECONDS = 7 * 86400.0
# - the comment a conversation began with: Meta takes a private reply to a comment within
#   7 days of it;
COMMENT_ORIGIN_TTL_SECONDS = 7 * 86400.0
# - the SLA state: a customer waiting a week is past every reply Meta allows, and once
#   answered it only keeps the conversation id for their next message, a week as well;
CONVERSATION_TTL_SECONDS = 7 * 86400.0
# - spam and loop state: their own rules' windows (pipeline/guard.py, pipeline/loops.py).
# The dead letters' text (the payload a replay needs) is kept this long, then blanked;
# the dead letter itself (ids, reason, times) stays for DEAD_LETTER_RETENTION_SECONDS.
DEAD_LETTER_PAYLOAD_RETENTION_SECONDS = 7 * 86400.0
# The longest any record about a customer lives after its last change, whatever its own
# time to live (guard state, SLA state, comment origins, delivery progress, own ids).
CUSTOMER_RECORD_RETENTION_SECONDS = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each kind of stored data is kept (the README's privacy table; settings
    ``IGBRIDGE_RETENTION_*``). Delivered jobs are deleted at once; the intake log's
    entries once split."""

    dedupe_seconds: float = DEDUPE_RETENTION_SECONDS
    dead_letter_seconds: float = DEAD_LETTER_RETENTION_SECONDS
    dead_letter_payload_seconds: float = DEAD_LETTER_PAYLOAD_RETENTION_SECONDS
    window_seconds: float = WINDOW_RETENTION_SECONDS
    records_seconds: float = CUSTOMER_RECORD_RETENTION_SECONDS


# Attempts at a compare-and-set before giving up (only heavy contention on one key, which
# per-customer ordering makes rare, exhausts them).
CAS_ATTEMPTS = 20


class RecordContention(StoreUnavailable):
    """A compare-and-set kept losing: handled like a short store outage (tried again)."""


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    namespace: str
    load: Callable[[bytes], T]
    dump: Callable[[T], bytes]
    # None: kept until deleted or overwritten. Guard state passes its own per channel rules.
    ttl_seconds: float | None = None
    # When the value is due for a regular task (unix seconds), so that task reads only what
    # is due (Store.due_records); None: not due.
    due: Callable[[T], float | None] | None = None

    def due_at(self, value: T) -> float | None:
        return None if self.due is None else self.due(value)


class _Value(BaseModel):
    # Unknown keys are ignored so an older or newer replica's record still reads.
    model_config = ConfigDict(extra="ignore")


def _model_record(
    namespace: str,
    model: type[M],
    ttl_seconds: float | None = None,
    due: Callable[[M], float | None] | None = None,
) -> Record[M]:
    return Record(
        namespace,
        model.model_validate_json,
        lambda value: value.model_dump_json().encode(),
        ttl_seconds,
        due,
    )


# -- value types -------------------------------------------------------------------------
class Progress(_Value):
    """How far an agent message got: parts sent, the route chosen, the final outcome."""

    sent: int = 0
    route: str | None = None
    status: str | None = None  # Delivered | Failed, once decided
    reasons: list[dict[str, str]] = []

    def fail(self, code: str, message: str) -> None:
        self.status = "Failed"
        self.reasons = [{"code": code, "message": message[:500]}]


class Conversation(_Value):
    """A customer's SLA state: since when they wait for an answer, and its escalation."""

    conversation_id: str | None = None
    waiting_since_ms: int | None = None
    escalated: bool = False
    # Unix time until which one replica's sweeper holds the escalation; 0 when unclaimed.
    claimed_until: float = 0.0


def _escalation_clock(state: Conversation) -> float | None:
    """When the SLA clock of a waiting period that can still be escalated started (unix
    seconds): the sweeper asks for those that started longer ago than its threshold. An
    answer or the escalation takes the customer out of that index."""
    if state.waiting_since_ms is None or state.escalated or not state.conversation_id:
        return None
    return state.waiting_since_ms / 1000


@dataclass
class SenderActivity:
    """The spam rules' memory of a sender: recent message times, and (time, text digest)
    pairs for repeats."""

    times: deque[float] = field(default_factory=deque)
    recent: deque[tuple[float, str]] = field(default_factory=deque)


def _load_sender(raw: bytes) -> SenderActivity:
    d = json.loads(raw)
    return SenderActivity(
        deque(float(t) for t in d.get("t") or []),
        deque((float(t), str(h)) for t, h in d.get("r") or []),
    )


def _dump_sender(state: SenderActivity) -> bytes:
    return json.dumps({"t": list(state.times), "r": [list(x) for x in state.recent]}).encode()


@dataclass
class LoopActivity:
    """The loop breaker's memory of a customer: the bot's last reply, their last texts,
    the bounces counted and until when bot replies are held."""

    last_bot_reply: float | None = None
    last_texts: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    bounces: deque[float] = field(default_factory=deque)
    broken_until: float | None = None
    last_inbound: float = 0.0


def _load_loop(raw: bytes) -> LoopActivity:
    d = json.loads(raw)
    return LoopActivity(
        last_bot_reply=d.get("bot"),
        last_texts=deque(d.get("texts") or [], maxlen=4),
        bounces=deque(d.get("bounces") or []),
        broken_until=d.get("broken"),
        last_inbound=float(d.get("inbound") or 0.0),
    )


def _dump_loop(state: LoopActivity) -> bytes:
    return json.dumps(
        {
            "bot": state.last_bot_reply,
            "texts": list(state.last_texts),
            "bounces": list(state.bounces),
            "broken": state.broken_until,
            "inbound": state.last_inbound,
        },
        ensure_ascii=False,
    ).encode()


def _load_comment(raw: bytes) -> CommentOrigin:
    d = json.loads(raw)
    return CommentOrigin(str(d["comment_id"]), int(d["ts_ms"]), bool(d.get("private_replied")))


def _dump_comment(origin: CommentOrigin) -> bytes:
    return json.dumps(asdict(origin)).encode()


# -- records -----------------------------------------------------------------------------
# The comment a conversation began with: a reply to that customer answers it (once).
COMMENT_ORIGIN: Record[CommentOrigin] = Record(
    "comment_origin", _load_comment, _dump_comment, COMMENT_ORIGIN_TTL_SECONDS
)
# Send API message ids of what the relay itself sent, so their echoes are known as ours.
OWN_MESSAGES: Record[bool] = Record(
    "own_message", lambda raw: raw == b"1", lambda _: b"1", WEEK_SECONDS
)
# Per agent message: so a retry or a restart never sends a part or a receipt twice.
PROGRESS: Record[Progress] = _model_record("outbound_progress", Progress, WEEK_SECONDS)
# Per customer: the SLA clock and its escalation.
CONVERSATIONS: Record[Conversation] = _model_record(
    "conversation", Conversation, CONVERSATION_TTL_SECONDS, _escalation_clock
)
# Per counter name: the channel's message totals across replicas and restarts.
TOTALS: Record[int] = Record(
    "channel_totals", lambda raw: int(raw or b"0"), lambda n: str(n).encode()
)
# Per customer, when replicas share the guard: spam counters and loop state.
SPAM_STATE: Record[SenderActivity] = Record("spam_state", _load_sender, _dump_sender)
LOOP_STATE: Record[LoopActivity] = Record("loop_state", _load_loop, _dump_loop)


# Per confirmation code: a data-deletion request's outcome, for the status URL Meta shows
# the person. It names no one (counts and times only), so it outlives the erasure.
class DeletionStatus(_Value):
    status: str = "completed"
    requested_at: float = 0.0
    removed: dict[str, int] = {}


DELETION_STATUS_TTL_SECONDS = 90 * 86400.0
DELETIONS: Record[DeletionStatus] = _model_record(
    "deletion_request", DeletionStatus, DELETION_STATUS_TTL_SECONDS
)

# Namespaces holding data about customers: their lifetime is capped by the retention in
# force (channel totals and the splitter's lead are about the relay, not about anyone).
CUSTOMER_NAMESPACES = frozenset(
    r.namespace
    for r in (COMMENT_ORIGIN, OWN_MESSAGES, PROGRESS, CONVERSATIONS, SPAM_STATE, LOOP_STATE)
)
# Set once at start from the settings (``limit_customer_records``); one relay per process,
# and every relay of a process reads the same environment.
_customer_record_cap = [CUSTOMER_RECORD_RETENTION_SECONDS]


def limit_customer_records(seconds: float) -> None:
    _customer_record_cap[0] = seconds


def lifetime(namespace: str, ttl_seconds: float | None) -> float | None:
    """A record's time to live as written: its own, capped for customers' data."""
    if namespace not in CUSTOMER_NAMESPACES:
        return ttl_seconds
    cap = _customer_record_cap[0]
    return cap if ttl_seconds is None else min(ttl_seconds, cap)


# -- access ------------------------------------------------------------------------------
async def get(store: Store, record: Record[T], key: str) -> T | None:
    raw = await store.get_record(record.namespace, key)
    return None if raw is None else record.load(raw)


async def put(store: Store, record: Record[T], key: str, value: T) -> None:
    await store.put_record(
        record.namespace,
        key,
        record.dump(value),
        ttl_seconds=lifetime(record.namespace, record.ttl_seconds),
        due_at=record.due_at(value),
    )


async def items(store: Store, record: Record[T]) -> list[tuple[str, T]]:
    return [(key, record.load(raw)) for key, raw in await store.list_records(record.namespace)]


async def due(store: Store, record: Record[T], until: float, limit: int) -> list[tuple[str, T]]:
    """Up to ``limit`` records whose due time is at most ``until``, earliest first."""
    rows = await store.due_records(record.namespace, until, limit)
    return [(key, record.load(raw)) for key, raw in rows]


async def change(
    store: Store,
    record: Record[T],
    key: str,
    fn: Callable[[T | None], T | None],
    *,
    ttl_seconds: float | None = None,
) -> T | None:
    """Apply ``fn`` to the key's value (None when there is none) by compare-and-set.

    ``fn`` returns the new value, or None to leave the record alone; so does ``change``.
    ``fn`` may run more than once, so it must only compute: the inbound and outbound
    workers, on any replica, may change one key at once. A value that encodes to the bytes
    already stored is not written again."""
    ttl = lifetime(record.namespace, record.ttl_seconds if ttl_seconds is None else ttl_seconds)
    for _ in range(CAS_ATTEMPTS):
        raw = await store.get_record(record.namespace, key)
        new = fn(None if raw is None else record.load(raw))
        if new is None:
            return None
        encoded = record.dump(new)
        if encoded == raw or await store.compare_and_put_record(
            record.namespace, key, raw, encoded, ttl_seconds=ttl, due_at=record.due_at(new)
        ):
            return new
    raise RecordContention(f"record {record.namespace}/{key}: too much contention")
