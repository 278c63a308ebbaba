"""One version everywhere: pyproject.toml's, which the code reads from the installed
distribution (igbridge.relay.version), both commands' --version, both build_info metrics,
the chart's appVersion and the image's label; and the license the wheel declares is the
one the repository ships."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from igbridge.operator import metrics as operator_metrics
from igbridge.relay.metrics import RelayMetrics
from igbridge.relay.version import VERSION

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_installed_version_is_pyprojects() -> None:
    # A stale install (pyproject bumped, scripts/setup not rerun) fails here.
    assert PROJECT["version"] == VERSION


def test_the_chart_ships_this_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "igbridge" / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION


def test_the_image_is_labelled_with_this_version() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    default = re.search(r"^ARG VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert default is not None
    assert default.group(1) == VERSION
    assert f"docker build -t igbridge:{VERSION} ." in dockerfile
    assert f"igbridge:{VERSION} ." in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", ["igbridge-relay", "igbridge-operator"])
def test_both_commands_say_their_version(command: str) -> None:
    script = Path(sys.executable).parent / command
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} {VERSION}"


def test_both_export_build_info_with_this_version() -> None:
    relay = RelayMetrics().registry
    assert relay.get_sample_value("igbridge_build_info", {"version": VERSION}) == 1
    operator = operator_metrics.REGISTRY
    assert operator.get_sample_value("igbridge_build_info", {"version": VERSION}) == 1


def test_license_file_is_the_one_the_wheel_declares() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
