"""The image recipe: slim pinned base, wheels built in a stage of their own, non-root.

No Docker engine runs on these machines, so this reads the Dockerfile; what the image
runs (the two console scripts) is exercised by every other test."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = (Path(__file__).parents[1] / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]


def test_base_is_slim_and_pinned() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), base.group(1)


def test_final_stage_has_no_build_tools_and_runs_as_non_root() -> None:
    build, final = stages()
    assert " AS build" in build
    assert "pip wheel" in build
    for tool in ("gcc", "build-essential", "apt-get install", "COPY relay", "COPY operator"):
        assert tool not in final
    assert "--no-index" in final  # installs only the wheels built above
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert '"igbridge-relay", "serve"' in final


def test_both_commands_are_console_scripts() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'igbridge-relay = "igbridge.relay.cli:main"' in pyproject
    assert 'igbridge-operator = "igbridge.operator.cli:main"' in pyproject
