"""A SQLite file from before dead letters kept their order time: opened, it gains the
column, and its dead letters can still be shown and replayed (first in their customer's
line, their order time unknown)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from igbridge.relay.store import NewJob, SQLiteStore

Q = "inbound"


def test_an_older_files_dead_letters_are_replayable(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")

    async def dead_letter_one() -> None:
        store = SQLiteStore(path)
        await store.open()
        await store.enqueue(Q, [NewJob("c", "m1", 5, b'{"text":"hi"}')])
        (job,) = await store.claim(Q, 1, 30)
        await store.dead_letter(job, "HTTP 400")
        await store.close()

    asyncio.run(dead_letter_one())
    with sqlite3.connect(path) as db:  # what an older version's file looks like
        db.execute("ALTER TABLE dead_letters DROP COLUMN order_ts")

    async def reopened() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            (letter,) = await store.dead_letters(Q)
            assert (letter.dedupe_key, letter.order_ts, letter.payload) == (
                "m1",
                0,
                b'{"text":"hi"}',
            )
            assert await store.replay_dead_letter(Q, letter.id)
            (job,) = await store.claim(Q, 1, 30)
            assert (job.dedupe_key, job.order_ts, job.attempts) == ("m1", 0, 0)
        finally:
            await store.close()

    asyncio.run(reopened())
