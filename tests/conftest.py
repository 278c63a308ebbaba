from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from igbridge.relay.sandbox.stack import Sandbox, run_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with run_sandbox(tmp_path) as sb:
        yield sb
