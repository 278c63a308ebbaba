"""Enqueues jobs forever, printing each dedupe key once enqueue returned; killed by the test."""

from __future__ import annotations

import asyncio
import sys

from igbridge.relay.store import NewJob, SQLiteStore


async def main(path: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    for i in range(100_000):
        key = f"m{i}"
        await store.enqueue("inbound", [NewJob(f"c{i}", key, i, b"{}")])
        print("ENQUEUED", key, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
