"""A SQLite store that cannot be trusted, through the real commands: a file that will not
open ends start-up with one line naming it (exit 1, no traceback, no secret); a file
deleted under a running relay turns webhooks and readiness to 503 with the reason,
instead of acks for webhooks the next start would not find."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from igbridge.sandbox.stack import Sandbox
from tests.harness.process import RelayProcess

SECRET = "app-secret-never-printed"
CLIENT_SECRET = "client-secret-never-printed"

# Root reads and writes any file: without these capabilities it meets the permissions
# an ordinary user would.
WITHOUT_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def as_ordinary_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions do not apply")
    return WITHOUT_ROOT_OVERRIDE


def relay_env(db: Path) -> dict[str, str]:
    """Enough to start: the store fails before any platform is called."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "IGBRIDGE_META_APP_SECRET": SECRET,
        "IGBRIDGE_META_VERIFY_TOKEN": "verify",
        "IGBRIDGE_META_ACCESS_TOKEN": "token",
        "IGBRIDGE_INSTAGRAM_ACCOUNT_ID": "1",
        "IGBRIDGE_GENESYS_API_URL": "http://127.0.0.1:9",
        "IGBRIDGE_GENESYS_CLIENT_ID": "client",
        "IGBRIDGE_GENESYS_CLIENT_SECRET": CLIENT_SECRET,
        "IGBRIDGE_GENESYS_INTEGRATION_ID": "integration",
        "IGBRIDGE_GENESYS_WEBHOOK_SECRET": "webhook-secret-0123456789",
        "IGBRIDGE_STORE_URL": f"sqlite:///{db}",
    }


def working_db(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.close()
    return path


def corrupt(path: Path) -> str:
    path.write_bytes(b"not a database, whatever it once was " * 200)
    return "not a SQLite database"


def unreadable(path: Path) -> str:
    working_db(path).chmod(0)
    return "cannot be read"


def read_only(path: Path) -> str:
    working_db(path).chmod(0o444)
    return "read-only"


FAULTS: dict[str, Callable[[Path], str]] = {
    "corrupt": corrupt,
    "unreadable": unreadable,
    "read-only": read_only,
}


def run_command(command: str, db: Path) -> subprocess.CompletedProcess[str]:
    relay = [sys.executable, "-P", "-m", "igbridge.relay"]
    if command == "deliver":
        # As serve starts it: with its end of the link to the web process.
        ours, theirs = socket.socketpair()
        with ours, theirs:
            return subprocess.run(
                [*as_ordinary_user(), *relay, "deliver", "--link-fd", str(theirs.fileno())],
                env=relay_env(db),
                pass_fds=(theirs.fileno(),),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
    args = ["serve", "--host", "127.0.0.1", "--port", "0"]
    if command == "serve inline":
        args += ["--delivery", "inline"]
    return subprocess.run(
        [*as_ordinary_user(), *relay, *args],
        env=relay_env(db),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "serve inline", "deliver"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_store_file_that_will_not_open_ends_start_up_with_one_line(
    tmp_path: Path, fault: str, command: str
) -> None:
    db = tmp_path / "relay.db"
    problem = FAULTS[fault](db)
    done = run_command(command, db)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    (line,) = [line for line in output.splitlines() if "store error" in line]
    assert str(db) in line
    assert problem in line
    assert "Traceback" not in output
    assert SECRET not in output
    assert CLIENT_SECRET not in output


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.1)):  # bounded
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("delivery", "deleted"),
    [("process", "relay.db"), ("process", "relay-intake.db"), ("inline", "relay.db")],
)
def test_a_store_file_deleted_under_the_relay_turns_webhooks_and_readiness_to_503(
    sandbox: Sandbox, tmp_path: Path, delivery: str, deleted: str
) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(
        sandbox.relay_env(db), tmp_path / "relay.log", serve_args=("--delivery", delivery)
    )
    relay.start()
    try:
        webhook = f"{relay.url}/webhooks/instagram"
        first = sandbox.meta.webhook([sandbox.meta.messaging("7101", {"text": "one"})])
        assert sandbox.meta.deliver_webhook(webhook, first).status_code == 200
        # Delivered: the delivery process has its store open (deleting the file while it
        # still opens it is a start-up failure, tested above).
        assert [m.text for m in sandbox.genesys.wait_for_messages(1)] == ["one"]
        assert httpx.get(f"{relay.admin_url}/readyz").status_code == 200

        (tmp_path / deleted).unlink()  # the main file, or the intake log beside it

        def refused() -> bool:
            body = sandbox.meta.webhook([sandbox.meta.messaging("7101", {"text": "later"})])
            return sandbox.meta.deliver_webhook(webhook, body).status_code == 503

        assert wait_for(refused), "a webhook was acked into a deleted file"
        ready = httpx.get(f"{relay.admin_url}/readyz")
        assert ready.status_code == 503
        assert f"{deleted}: the file was deleted" in ready.json()["problems"]["store"]
        assert httpx.get(f"{relay.url}/healthz").status_code == 200  # alive, not ready
        assert "deleted while open" in relay.log_path.read_text()
    finally:
        relay.stop()
