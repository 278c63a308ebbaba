"""The README's main-job command plays the whole story end to end and says so; an occupied
port is one line; SIGTERM leaves no temporary directory behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMAND = [sys.executable, "-P", "-m", "igbridge.relay", "sandbox"]


def test_sandbox_command_plays_the_whole_story(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        COMMAND,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    print(f"the demo took {took:.1f} s")
    assert "Meta verifies the webhook: HTTP 200" in out
    # The DM in, with its routing attributes (CRM fields too), and the reply out.
    assert "text: Hi! My order #4512 hasn't arrived yet 😟" in out
    assert "FollowerTier=micro, CustomerTier=Gold" in out
    assert "attachment: Image (image/jpeg)" in out
    assert "Meta Send API received → 6915500000000001: 'Sorry about that, Ana!" in out
    assert "Genesys receipt: Delivered" in out
    # The long reply in parts; the quick replies and the tap; story; comment.
    assert "quick reply offered: 'Track my order'" in out
    assert "Genesys received at …/structured/response [Instagram_DM/quick_reply]" in out
    assert "[Instagram_StoryMention/story_mention]" in out
    assert "[Instagram_Comment/comment] from maria_s" in out
    assert "private reply to comment" in out
    # The window: the bot refused with the agent's sentence, the person tagged.
    assert "Genesys receipt: Failed: MessageExpired — Not delivered: the customer's last" in out
    assert "(MESSAGE_TAG HUMAN_AGENT): 'Hi Leo" in out
    assert "priority 600" in out
    assert 'igbridge_guard_total{rule="keyword",outcome="dropped"} 1' in out
    assert "!!" not in out  # no step failed
    assert "The whole story: every step as expected." in out
    # The last line points at no server: they have all exited.
    last = out.rstrip().splitlines()[-1]
    assert "stopped" in last
    assert "http" not in last
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone


def test_an_occupied_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag in ("--port", "--console-port"):
            proc = subprocess.run(
                [*COMMAND, "--console", flag, str(port)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 1
            assert proc.stderr == (
                f"igbridge-relay sandbox: port {port} on 127.0.0.1 is already in use\n"
            )
            assert proc.stdout == ""


@pytest.mark.parametrize(
    ("mode", "wanted", "code"),
    [
        (["--console"], "open http://127.0.0.1:", 0),  # how a console is meant to stop
        ([], "igbridge sandbox: every server", 143),  # the story cut short
    ],
    ids=["console", "story"],
)
def test_sigterm_stops_everything_and_removes_the_temp_dir(
    tmp_path: Path, mode: list[str], wanted: str, code: int
) -> None:
    with subprocess.Popen(
        [*COMMAND, *mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    ) as proc:
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # ends at the wanted line, or when the process exits
                seen.append(line)
                if wanted in line:
                    break
            assert any(wanted in line for line in seen), "".join(seen)
            assert [p.name.startswith("igbridge-sandbox-") for p in tmp_path.iterdir()] == [True]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == code
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert list(tmp_path.iterdir()) == []
