"""The store: durable keyed FIFO queues with deduplication, leases and dead letters.

One protocol, two backends (SQLite, the embedded default; Redis for several replicas).
A *queue* (``inbound``: Instagram → Genesys, ``outbound``: Genesys → Instagram) holds
jobs. Each job belongs to an ordering *key* (the customer's IGSID): jobs of one key are
handed out one at a time, oldest ``order_ts`` first, so a customer's messages stay in
order while different customers proceed in parallel. A job whose ``dedupe_key`` was
seen before in the same queue is dropped at enqueue time (and counted as a duplicate).

The *intake* is not a queue: it is an append-only log of raw signed webhooks with one
consumer position. The ack appends (durably, group-committed: that is its promise); the
splitter reads what lies after the position and, in one atomic step, enqueues the events
it made of those entries and moves the position past them — a compare-and-set, so two
splitters never both consume an entry and the log's order is the order events enter their
queues. Consumed entries are trimmed by the store; one that cannot be split leaves the log
as a dead letter (filed under ``INTAKE``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue. ``payload`` is opaque JSON bytes (UTF-8) owned by the caller."""

    key: str
    dedupe_key: str
    order_ts: int  # milliseconds since the epoch; Meta's event timestamp for inbound
    payload: bytes


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    queue: str
    key: str
    dedupe_key: str
    order_ts: int
    payload: bytes
    attempts: int  # deliveries tried before this one
    enqueued_at: float  # unix seconds, when the store accepted it
    # Which claim this is, for backends shared by replicas: a job taken over after its
    # lease ran out gets a new token, and the old holder can no longer renew or release it.
    lease: str = ""


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    queue: str
    key: str
    dedupe_key: str
    payload: bytes
    reason: str
    attempts: int
    failed_at: float
    order_ts: int = 0  # the job's order time (0 for dead letters stored before it was kept)


# The name intake entries that could not be split are dead-lettered under.
INTAKE = "intake"


@dataclass(frozen=True, slots=True)
class IntakeEntry:
    """A raw webhook in the intake log, as it was signed. ``id`` is its place in the log:
    later entries have larger ids."""

    id: int
    body: bytes
    received_at: float  # unix seconds, when the store accepted it


@dataclass(frozen=True, slots=True)
class IntakeBatch:
    """Entries after the consumer's position (oldest first), with that position: the
    compare-and-set of ``consume_intake`` checks it has not moved meanwhile."""

    position: int
    entries: list[IntakeEntry]


@dataclass(frozen=True, slots=True)
class IntakeBacklog:
    entries: int  # appended, not yet consumed
    oldest_age: float | None  # seconds the oldest of them has waited; None when none


class IntakeMoved(Exception):
    """The intake position is no longer the one read: another splitter consumed those
    entries (read again and go on from there)."""


class StoreUnavailable(Exception):
    """The backend cannot be reached; callers answer 503 rather than accept work."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend is unreachable."""

    async def enqueue(
        self,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
    ) -> EnqueueResult:
        """Durably store the new jobs in one transaction, skipping seen dedupe keys, together
        with the customers' latest message times (``{key: ms}``, the max wins) that Meta's
        reply window is measured from.

        When this returns, a crash or power cut loses none of it.
        """

    async def claim(self, queue: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to ``limit`` due jobs, at most one per key and only for keys with no
        job currently leased; within a key the lowest (order_ts, id) goes first.
        A lease that expires (the worker died) makes the job claimable again."""

    async def renew(self, queue: str, jobs: Sequence[Job], lease_seconds: float) -> list[int]:
        """Extend the leases of jobs still being worked on (a heartbeat, so a short lease
        still covers a slow delivery); returns the ids whose lease was lost meanwhile."""

    async def complete(self, job: Job) -> None:
        """The job is done: remove it (its dedupe key stays remembered)."""

    async def append_intake(self, bodies: Sequence[bytes]) -> list[int]:
        """Append raw webhooks to the intake log; their ids, in order. Appends asked for
        while one is under way share the next commit.

        When this returns, a crash or power cut loses none of it (the ack's promise)."""

    async def read_intake(self, limit: int) -> IntakeBatch:
        """Up to ``limit`` entries after the consumer's position, oldest first."""

    async def consume_intake(
        self,
        position: int,
        through: int,
        queue: str,
        jobs: Sequence[NewJob],
        customer_messages: Mapping[str, int] | None = None,
        unreadable: Sequence[tuple[IntakeEntry, str]] = (),
    ) -> EnqueueResult:
        """In one atomic step: move the intake position from ``position`` (as read) to
        ``through`` (the last entry consumed), enqueue ``jobs`` into ``queue`` as
        ``enqueue`` does (dedupe, customers' latest message times) and dead-letter the
        ``unreadable`` entries with their reasons. Raises IntakeMoved, changing nothing,
        when the position is no longer ``position``.

        A crash leaves either the entries (split again; dedupe drops what got through) or
        their events; when this returns, a process crash loses none of it."""

    async def intake_backlog(self) -> IntakeBacklog:
        """How many entries wait after the position, and for how long the oldest has."""

    async def retry(self, job: Job, delay_seconds: float, error: str) -> None:
        """Release the lease; the job (still head of its key) becomes due after the delay."""

    async def dead_letter(self, job: Job, reason: str) -> None:
        """Move the job to the dead-letter record with its reason; its key moves on."""

    async def depth(self, queue: str) -> int:
        """Jobs waiting or in flight in the queue."""

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]: ...

    async def dead_letter_count(self, queue: str) -> int: ...

    async def prune_dead_letters(self, queue: str, older_than_seconds: float) -> int:
        """Forget dead letters older than this (they are for people to look at, not to keep
        forever); returns how many."""

    async def find_dead_letter(self, queue: str, dead_id: int) -> DeadLetter | None:
        """One dead letter of the queue by its id, or None."""

    async def replay_dead_letter(self, queue: str, dead_id: int) -> bool:
        """In one transaction, put the dead letter back into its queue as a fresh job
        (attempts 0, due now, its key, dedupe key and order time, so the customer's order
        holds; dedupe is not asked, it saw that key already) and remove the dead letter.
        False when there is no such dead letter, it is an ``INTAKE`` one (a raw webhook, not
        a job) or its payload was blanked (retention): nothing to deliver."""

    async def purge_dead_letters(
        self,
        queue: str,
        ids: Sequence[int] | None = None,
        older_than_seconds: float | None = None,
    ) -> int:
        """Delete the queue's dead letters (only ``ids`` when given; only those failed more
        than ``older_than_seconds`` ago when given); returns how many."""

    async def oldest_age(self, queue: str) -> float | None:
        """Seconds the oldest job in the queue has waited; None when it is empty."""

    async def prune_dedupe(self, queue: str, older_than_seconds: float) -> int:
        """Forget dedupe keys older than this (Meta retries for up to 36 h); returns how many."""

    async def last_customer_message(self, key: str) -> int | None:
        """The customer's latest message time in ms, for Meta's 24-hour reply window."""

    async def prune_windows(self, older_than_seconds: float) -> int:
        """Forget customers whose latest message is older than this; returns how many."""

    async def window_customers(self, from_ms: int, to_ms: int) -> list[tuple[str, int]]:
        """Customers whose latest message time lies in ``[from_ms, to_ms]``, with that time
        (read by its index: the near-window count asks for a few hours of customers)."""

    async def put_record(
        self,
        namespace: str,
        key: str,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> None:
        """Store a small JSON record (delivery progress, a conversation's origin, ...),
        forgotten after ``ttl_seconds`` when given. ``due_at`` (unix seconds) indexes it
        for ``due_records``; None takes it out of that index."""

    async def compare_and_put_record(
        self,
        namespace: str,
        key: str,
        expected: bytes | None,
        value: bytes,
        ttl_seconds: float | None = None,
        due_at: float | None = None,
    ) -> bool:
        """Write ``value`` (and its ``due_at``, as ``put_record``) only if the record still
        holds ``expected`` (None: absent).

        Replicas and concurrent tasks update shared records (a customer's SLA state)
        through this, so no update is lost and an escalation is claimed once."""

    async def get_record(self, namespace: str, key: str) -> bytes | None: ...

    async def prune_records(self) -> int:
        """Drop records whose time to live has passed; returns how many."""

    async def list_records(self, namespace: str) -> list[tuple[str, bytes]]:
        """Every live record of a namespace (it grows with the customers seen: the regular
        tasks ask ``due_records`` instead)."""

    async def due_records(
        self, namespace: str, until: float, limit: int
    ) -> list[tuple[str, bytes]]:
        """Up to ``limit`` live records of a namespace whose ``due_at`` is at most ``until``,
        earliest first, read by the due index (records without one are never read)."""

    async def blank_dead_letter_payloads(self, queue: str, older_than_seconds: float) -> int:
        """Blank the payload (the customer's text, kept for a replay) of dead letters failed
        longer ago than this; their ids, reason and times stay until pruned. Returns how
        many were blanked now."""

    async def forget_customer(self, igsid: str) -> dict[str, int]:
        """Erase what is stored about one customer (privacy erasure): their jobs in every
        queue, dead letters keyed by or mentioning them, their reply window, records keyed
        by or mentioning them, dedupe keys containing their id, and intake-log entries
        mentioning them (an entry is a whole webhook, so it goes with the other events it
        carried). Matching is by substring: callers pass a full id. Returns how many of
        each kind (``FORGOTTEN_KINDS``) went."""


# What ``forget_customer`` counts, in the order it reports them.
FORGOTTEN_KINDS = ("jobs", "dead_letters", "windows", "records", "dedupe", "intake")
