"""A Redis primary, its replica and a Sentinel watching them, all real processes on loopback.

The sentinel is ``redis-server <conf> --sentinel`` (the same binary ``scripts/setup``
installs): it declares the primary down after ``down_after_ms`` without an answer and, with
a quorum of one, promotes the replica by itself, as a production Sentinel does.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from igbridge.sandbox.server import free_port
from tests.harness.redis_server import RedisServer, redis_binary

SERVICE = "shop"


class SentinelSet:
    def __init__(self, data_dir: Path, *, down_after_ms: int = 1000) -> None:
        self.data_dir = data_dir
        self.primary = RedisServer(data_dir / "a")
        self.replica = RedisServer(data_dir / "b")
        self.sentinel_port = free_port()
        self.down_after_ms = down_after_ms
        self._sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def start(self, timeout: float = 20.0) -> SentinelSet:
        self.primary.start()
        self.replica.start()
        replica = self.client(self.replica.port)
        replica.replicaof("127.0.0.1", self.primary.port)
        deadline = time.monotonic() + timeout
        # In sync before the sentinel starts: its first look at the primary then finds the
        # replica (the next look would be 10 s later).
        while replica.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not sync in {timeout}s")
            time.sleep(0.05)
        conf = self.data_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {self.data_dir}\n"
            f"logfile {self.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self._sentinel = subprocess.Popen(
            [redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Ready once the sentinel has found the replica (through the primary's INFO).
        while time.monotonic() < deadline:
            if self._sentinel.poll() is not None:
                raise RuntimeError(f"sentinel exited: {self.sentinel_log()}")
            try:
                synced = replica.info("replication").get("master_link_status") == "up"
                known = self.client(self.sentinel_port).sentinel_slaves(SERVICE)
            except redis.RedisError:
                synced, known = False, []
            if synced and known:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"sentinel set not ready in {timeout}s: {self.sentinel_log()}")

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def primary_port(self) -> int:
        """The port the sentinel names as primary now."""
        sentinel = self.client(self.sentinel_port)
        address: tuple[str, int] = sentinel.sentinel_get_master_addr_by_name(SERVICE)  # type: ignore[assignment]  # redis-py types it loosely
        return int(address[1])

    def sentinel_log(self) -> str:
        log = self.data_dir / "sentinel.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def stop(self) -> None:
        if self._sentinel is not None:
            self._sentinel.terminate()
            try:
                self._sentinel.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._sentinel.kill()
                self._sentinel.wait(timeout=10)
            self._sentinel = None
        self.replica.stop()
        self.primary.stop()
