"""The SQLite intake log: raw webhooks in a database file of their own.

``<name>-intake.db`` beside the main file holds one table of raw webhooks and is written
by the web process alone (its acks' fsynced group commits), so an ack never waits for the
delivery process's write lock on the main file. The delivery process reads it (WAL readers
take no lock), keeps its position in the main file (in the same transaction as the inbound
jobs it makes of the entries) and deletes what it consumed now and then, in one short
write: at most once a second or every ``TRIM_EVERY`` entries.

An entry's id is SQLite's rowid: the largest so far plus one. Trimming keeps the entry at
the position, so the largest id never falls below the position and a new entry always
lands after it. The functions here take a connection; ``SQLiteStore`` runs them on its
threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS intake (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    received_at REAL NOT NULL
);
"""
# In the main file, beside the jobs made of the entries: one row, the consumer's position
# and the position last made durable (what a trim may delete below).
POSITION_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS intake_position (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    position INTEGER NOT NULL,
    trimmed INTEGER NOT NULL
)""",
    "INSERT OR IGNORE INTO intake_position (id, position, trimmed) VALUES (0, 0, 0)",
)
TRIM_SECONDS = 1.0
TRIM_EVERY = 4096
# The web process appends without pause, so a passive checkpoint (the trimming process's,
# after its commits) never finds the WAL wholly copied with no commit since, and the WAL
# would never start over: past this size the trim forces that (a pause of the appends
# while the last frames are copied, every few seconds under load).
WAL_RESTART_BYTES = 16 * 1024 * 1024
# How long the forced checkpoint waits for the appender's commit under way.
CHECKPOINT_WAIT_MS = 200


def log_path(path: str) -> str:
    """``/data/relay.db`` → ``/data/relay-intake.db``."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-intake{p.suffix}"))


def connect_log(path: str, checkpoint: bool) -> sqlite3.Connection:
    """The log's own connection (creates the file): every commit fsynced, as an ack needs.
    ``checkpoint=False``: the process only appends and leaves checkpoints to the one that
    trims (a checkpoint inside a commit would add its copy to the acks waiting on it)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")  # while the schema is checked
        db.executescript(LOG_SCHEMA)
        if not checkpoint:
            db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("PRAGMA busy_timeout=0")  # writes retry finely (sqlite._begin)
    except BaseException:
        db.close()
        raise
    return db


def connect_reader(path: str) -> sqlite3.Connection:
    """A connection that only reads the log (after ``connect_log`` created it)."""
    # Used by one thread at a time, not always the same (``SQLiteStore``'s ``inline``).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")  # only a WAL recovery makes a reader wait
    return db


def append(
    db: sqlite3.Connection, batches: Sequence[Sequence[bytes]], now: float
) -> list[list[int]]:
    """Inside a write transaction: each batch's bodies appended, their ids per batch."""
    out: list[list[int]] = []
    for bodies in batches:
        ids: list[int] = []
        for body in bodies:
            cur = db.execute("INSERT INTO intake (body, received_at) VALUES (?, ?)", (body, now))
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
        out.append(ids)
    return out


def read_after(
    log: sqlite3.Connection, position: int, limit: int
) -> list[tuple[int, bytes, float]]:
    rows = log.execute(
        "SELECT id, body, received_at FROM intake WHERE id > ? ORDER BY id LIMIT ?",
        (position, limit),
    ).fetchall()
    return [(int(r[0]), bytes(r[1]), float(r[2])) for r in rows]


def backlog(log: sqlite3.Connection, position: int) -> tuple[int, float | None]:
    count, oldest = log.execute(
        "SELECT COUNT(*), MIN(received_at) FROM intake WHERE id > ?", (position,)
    ).fetchone()
    return int(count), None if oldest is None else float(oldest)


def create_position(db: sqlite3.Connection) -> None:
    """Inside a write transaction on the main file (a statement at a time: executescript
    would commit the transaction it is in)."""
    for statement in POSITION_SCHEMA:
        db.execute(statement)


def position(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT position FROM intake_position WHERE id = 0").fetchone()[0])


def move_position(db: sqlite3.Connection, expected: int, through: int) -> bool:
    """Inside a write transaction on the main file: the compare-and-set."""
    cur = db.execute(
        "UPDATE intake_position SET position = ? WHERE id = 0 AND position = ?",
        (through, expected),
    )
    return cur.rowcount == 1


def mark_trimmed(db: sqlite3.Connection) -> int:
    """Inside a durable write transaction on the main file: the position, now fsynced, up
    to which the log may be trimmed (a trim below a position a power cut could still undo
    would lose webhooks)."""
    db.execute("UPDATE intake_position SET trimmed = position WHERE id = 0")
    return int(db.execute("SELECT trimmed FROM intake_position WHERE id = 0").fetchone()[0])


def restart_wal(log: sqlite3.Connection, path: str) -> bool:
    """Outside a transaction: when the log's WAL has grown past WAL_RESTART_BYTES, copy it
    into the file and empty it; whether it did (False: busy now, next trim tries again)."""
    try:
        size = Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        return False
    if size < WAL_RESTART_BYTES:
        return False
    log.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
    try:
        busy = int(log.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
    finally:
        log.execute("PRAGMA busy_timeout=0")
    return busy == 0


def trim(log: sqlite3.Connection, below: int) -> int:
    """Inside a write transaction on the log: forget consumed entries, keeping the one at
    the position (so the next id stays above it)."""
    return log.execute("DELETE FROM intake WHERE id < ?", (below,)).rowcount


# What an erased entry's body becomes: a webhook with no events, which the splitter
# consumes as such (no dead letter), keeping the entry's id and so the log's ids in order.
ERASED_BODY = b'{"object":"instagram","entry":[]}'


def erase_mentioning(log: sqlite3.Connection, text: str) -> int:
    """Inside a write transaction on the log: blank the entries whose body mentions
    ``text`` (a customer being forgotten); how many. The old bodies' pages are overwritten
    on disk, not only unlinked."""
    log.execute("PRAGMA secure_delete=ON")
    try:
        return log.execute(
            "UPDATE intake SET body = ? WHERE instr(CAST(body AS TEXT), ?) > 0 AND body != ?",
            (ERASED_BODY, text, ERASED_BODY),
        ).rowcount
    finally:
        log.execute("PRAGMA secure_delete=OFF")
