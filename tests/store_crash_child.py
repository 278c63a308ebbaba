"""Stores jobs (``inbound``) or raw webhooks (``intake``) forever, printing each one's key
once the store call returned; killed by the test."""

from __future__ import annotations

import asyncio
import sys

from igbridge.relay.store import NewJob, SQLiteStore


async def main(path: str, kind: str) -> None:
    store = SQLiteStore(path)
    await store.open()
    for i in range(100_000):
        key = f"m{i}"
        if kind == "intake":
            await store.append_intake([key.encode()])
        else:
            await store.enqueue("inbound", [NewJob(f"c{i}", key, i, b"{}")])
        print("STORED", key, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "inbound"))
