"""The image recipe: slim pinned base, wheels built in a stage of their own from a pinned
lock (dependencies cached apart from the sources), OCI labels, non-root.

No Docker engine runs on these machines, so this reads the Dockerfile; what the image
runs (the two console scripts) is exercised by every other test."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = ROOT / "requirements.lock"


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
    assert "--no-index --find-links=/deps --requirement /tmp/requirements.lock" in final
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert '"igbridge-relay", "serve"' in final


def test_both_commands_are_console_scripts() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'igbridge-relay = "igbridge.relay.cli:main"' in pyproject
    assert 'igbridge-operator = "igbridge.operator.cli:main"' in pyproject


def test_buildkit_syntax_line_comes_first() -> None:
    assert DOCKERFILE.splitlines()[0] == "# syntax=docker/dockerfile:1"


def test_dependencies_install_from_the_lock_before_the_sources_are_copied() -> None:
    """A source edit must not rebuild the dependencies' layer."""
    build, _ = stages()
    lock_install = build.index("--requirement requirements.lock")
    assert build.index("COPY requirements.lock") < lock_install
    for source in ("COPY pyproject.toml", "COPY relay", "COPY operator", "COPY sandbox"):
        assert lock_install < build.index(source), source
    assert re.search(r"pip wheel .*--no-deps \.$", build, re.MULTILINE)


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not pinned: {line}"
            assert version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_pins_every_runtime_dependency_at_an_allowed_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = pinned()
    # The image is Linux on the Python of its base image.
    # (evaluate() fills in the rest of this environment, such as the Python version).
    env = {"sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    for text in project["dependencies"]:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock (run scripts/lock.py)"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    # Runtime only: no test or sandbox tools in the image.
    for dev in ("pytest", "mypy", "ruff", "hypothesis", "purecloudplatformclientv2"):
        assert dev not in pins


def test_image_carries_oci_labels() -> None:
    _, final = stages()
    labels = dict(re.findall(r"org\.opencontainers\.image\.(\w+)=\"([^\"]*)\"", final))
    assert {"title", "description", "version", "licenses", "source"} <= labels.keys()
    assert labels["licenses"] == "Apache-2.0"
    assert labels["version"] == "${VERSION}"
