"""The whole sandbox on loopback: Meta and Genesys simulators, a TLS CDN, and a relay.

Used by `igbridge-relay sandbox`, the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from igbridge.relay.app import create_app
from igbridge.relay.config import load_settings

from .genesys_sim import GenesysSimulator
from .meta_sim import MetaSimulator
from .relay_server import RelayThread
from .server import ThreadedServer, serve_in_thread
from .tls import TLSFiles, make_tls

# Sandbox-only values: the simulators are the only parties that ever see them.
VERIFY_TOKEN = "sandbox-verify-token"  # noqa: S105
WEBHOOK_SECRET = "sandbox-genesys-webhook-secret"  # noqa: S105


@dataclass
class Sandbox:
    meta: MetaSimulator
    genesys: GenesysSimulator
    graph: ThreadedServer
    genesys_server: ThreadedServer
    cdn: ThreadedServer
    tls: TLSFiles

    def cdn_url(self, asset_id: str) -> str:
        return f"{self.cdn.url}/ig_messaging_cdn/{asset_id}?signature=sandbox"

    def relay_env(self, store_path: Path, **overrides: str) -> dict[str, str]:
        env = {
            "IGBRIDGE_META_GRAPH_URL": self.graph.url,
            "IGBRIDGE_META_APP_SECRET": self.meta.app_secret,
            "IGBRIDGE_META_VERIFY_TOKEN": VERIFY_TOKEN,
            "IGBRIDGE_META_ACCESS_TOKEN": self.meta.access_token,
            "IGBRIDGE_INSTAGRAM_ACCOUNT_ID": self.meta.account_id,
            "IGBRIDGE_GENESYS_API_URL": self.genesys_server.url,
            "IGBRIDGE_GENESYS_CLIENT_ID": self.genesys.client_id,
            "IGBRIDGE_GENESYS_CLIENT_SECRET": self.genesys.client_secret,
            "IGBRIDGE_GENESYS_INTEGRATION_ID": next(iter(self.genesys.integration_ids)),
            "IGBRIDGE_GENESYS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "IGBRIDGE_STORE_URL": f"sqlite:///{store_path}",
            "IGBRIDGE_MEDIA_ALLOWED_HOSTS": f"127.0.0.1:{self.cdn.port}",
            "IGBRIDGE_MEDIA_CA_FILE": str(self.tls.ca),
            "IGBRIDGE_MEDIA_TIMEOUT": "1",
            "IGBRIDGE_GENESYS_TIMEOUT": "2",
            # Tests replay recorded webhooks whose times are fixed (2026-01-01): not refused
            # as stale here; tests of the replay check set it back.
            "IGBRIDGE_REPLAY_HORIZON_SECONDS": "0",
        }
        env.update(overrides)
        return env


@contextmanager
def run_sandbox(workdir: Path) -> Iterator[Sandbox]:
    meta = MetaSimulator()
    genesys = GenesysSimulator()
    tls = make_tls(workdir / "tls")
    with ExitStack() as stack:
        graph = stack.enter_context(serve_in_thread(meta.app))
        gen = stack.enter_context(serve_in_thread(genesys.app))
        cdn = stack.enter_context(serve_in_thread(meta.cdn_app, certfile=tls.cert, keyfile=tls.key))
        yield Sandbox(meta, genesys, graph, gen, cdn, tls)


@contextmanager
def run_relay(env: dict[str, str], port: int = 0) -> Iterator[RelayThread]:
    server = RelayThread(create_app(load_settings(env)), port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
