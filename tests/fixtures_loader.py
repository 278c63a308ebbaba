"""Named webhook fixtures: one JSON body per Instagram payload shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "instagram"
ACCOUNT_ID = "17841400000000001"
CUSTOMER = "6915500000000001"


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def load_fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def load_fixture_json(name: str) -> Any:
    return json.loads(load_fixture(name))
