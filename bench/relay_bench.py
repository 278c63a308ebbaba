"""Relay benchmark against the sandbox, on loopback (not part of the test suite).

    .venv/bin/python bench/relay_bench.py [--messages 2000] [--concurrency 16]

The relay runs as its own process (as in production); the Meta side (load generator) and
the Genesys simulator run here. Prints webhook-ack latency and end-to-end throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from igbridge.relay.sandbox.meta_sim import encode_like_meta, sign_meta
from igbridge.relay.sandbox.process import RelayProcess
from igbridge.relay.sandbox.stack import Sandbox, run_sandbox


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


async def send_all(
    sb: Sandbox, url: str, messages: int, concurrency: int, customers: int
) -> list[float]:
    bodies = []
    t0 = int(time.time() * 1000)
    for i in range(messages):
        customer = f"7{i % customers:05d}"
        item = sb.meta.messaging(customer, {"text": f"bench message {i} 🚀"}, ts_ms=t0 + i)
        raw = encode_like_meta(sb.meta.webhook([item]))
        bodies.append((raw, sign_meta(raw, sb.meta.app_secret)))
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            raw, sig = queue.get_nowait()
            started = time.perf_counter()
            resp = await client.post(
                url,
                content=raw,
                headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"},
            )
            latencies.append(time.perf_counter() - started)
            if resp.status_code != 200:
                raise RuntimeError(f"relay answered {resp.status_code}: {resp.text}")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--customers", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_sandbox(Path(tmp)) as sb:
        relay = RelayProcess(
            sb.relay_env(Path(tmp) / "bench.db", IGBRIDGE_LOG_LEVEL="WARNING"),
            Path(tmp) / "relay.log",
        )
        relay.start()
        try:
            started = time.perf_counter()
            lat = asyncio.run(
                send_all(
                    sb,
                    f"{relay.url}/webhooks/instagram",
                    args.messages,
                    args.concurrency,
                    args.customers,
                )
            )
            acked = time.perf_counter() - started
            sb.genesys.wait_for_messages(args.messages, timeout=600)
            done = time.perf_counter() - started
            delivered = len(sb.genesys.snapshot())
        finally:
            relay.stop()
    results = {
        "messages": args.messages,
        "concurrency": args.concurrency,
        "customers": args.customers,
        "ack_requests_per_s": args.messages / acked,
        "ack_p50_ms": percentile(lat, 50) * 1000,
        "ack_p99_ms": percentile(lat, 99) * 1000,
        "ack_mean_ms": statistics.fmean(lat) * 1000,
        "end_to_end_messages_per_s": delivered / done,
        "delivered": delivered,
    }
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "relay_bench.json").write_text(json.dumps(results, indent=2))
    print(f"{'measure':<34}{'value':>12}")
    for key, value in results.items():
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        print(f"{key:<34}{shown:>12}")


if __name__ == "__main__":
    main()
