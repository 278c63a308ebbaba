"""The one version of igbridge: the installed distribution's (pyproject.toml's ``version``).

The relay and the operator show it in ``--version`` and ``igbridge_build_info``; the
chart's appVersion and the image's label are checked against it by the tests."""

from __future__ import annotations

from importlib.metadata import version

VERSION = version("igbridge")
