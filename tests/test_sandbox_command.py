"""The README's main-job command plays its conversation end to end and says so."""

from __future__ import annotations

import subprocess
import sys


def test_sandbox_command_plays_the_conversation() -> None:
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "igbridge.relay", "sandbox"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Meta verifies the webhook: HTTP 200" in out
    assert "text: Hi! My order #4512 hasn't arrived yet 😟" in out
    assert "[Instagram_StoryMention/story_mention]" in out
    assert "attachment: Image (image/jpeg)" in out
    assert "[Instagram_Comment/comment] from maria_s" in out
    assert "Delivered 5, duplicates dropped 1, dead letters 0." in out
