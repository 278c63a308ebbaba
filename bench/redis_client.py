"""CPU per Redis round trip: redis-py's pipeline (the Redis store's client before), redis-py
driven by hand on one of its connections, and the store's own lean connection
(relay/store/resp.py).

A real redis-server on 127.0.0.1 answers; the figure is this process's CPU µs (user +
system) per round trip of ``--commands`` commands in one ``MULTI … EXEC`` block (half
``EVALSHA`` of a one-line script, half ``GET``, as the store's blocks mix them), after a
warm-up, on uvloop as in the relay.

    .venv/bin/python -P bench/redis_client.py [--commands 10] [--rounds 3000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

from igbridge.relay.store.resp import Address, Command, RespConnection

# Appended, never prepended: the repository root has a folder named operator/.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from tests.harness.redis_server import RedisServer

WARM_UP = 200


async def measure(
    name: str, commands: int, rounds: int, call: Callable[[], Awaitable[Any]]
) -> None:
    for _ in range(WARM_UP):
        await call()
    started = time.process_time()
    for _ in range(rounds):
        await call()
    cpu = time.process_time() - started
    print(f"{name:<28}{cpu / rounds * 1e6:8.1f} µs per round trip of {commands} commands")


async def main(server: RedisServer, commands: int, rounds: int) -> None:
    client = Redis.from_url(server.url, socket_timeout=2.0)
    sha = await client.script_load("return redis.call('GET', KEYS[1])")
    block: list[Command] = [
        ("EVALSHA", sha, 1, f"k{i}") if i % 2 else ("GET", f"k{i}") for i in range(commands)
    ]

    async def pipeline() -> list[Any]:
        pipe = client.pipeline(transaction=True)
        for command in block:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)

    async def by_hand() -> Any:
        pool = client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            packed = conn.pack_commands([("MULTI",), *block, ("EXEC",)])
            await conn.send_packed_command(b"".join(packed))
            reply = None
            for _ in range(len(block) + 2):
                reply = await conn.read_response()
            return reply
        finally:
            await pool.release(conn)

    lean = await RespConnection.open(Address("127.0.0.1", server.port), within=2.0)
    try:
        await measure("redis-py pipeline", commands, rounds, pipeline)
        await measure("redis-py connection by hand", commands, rounds, by_hand)
        await measure(
            "lean (relay/store/resp.py)", commands, rounds, lambda: lean.transaction(block)
        )
    finally:
        lean.close()
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp)).start()
        try:
            uvloop.run(main(redis, args.commands, args.rounds))
        finally:
            redis.stop()
