"""Print the pinned runtime dependencies of igbridge as installed in this environment
(no dev or sandbox extras): the lock file the image installs from.

    .venv/bin/python scripts/lock.py > requirements.lock

Run it after changing pyproject.toml's dependencies (and installing them); the tests check
that the lock covers every runtime dependency at a version pyproject allows."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# igbridge's runtime dependencies, pinned: the image installs exactly these (Dockerfile).
# Generated from the development environment by scripts/lock.py; do not edit by hand.
"""


def runtime_closure(root: str) -> dict[str, str]:
    """Every distribution the root needs at run time (markers evaluated for this Python and
    platform, extras not taken), by canonical name, with its installed version."""
    pinned: dict[str, str] = {}
    todo = [(root, frozenset[str]())]
    while todo:
        name, extras = todo.pop()
        dist = distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in wanted):
                continue
            key = canonicalize_name(req.name)
            try:
                version = distribution(req.name).version
            except PackageNotFoundError:
                raise SystemExit(f"{req.name} (needed by {name}) is not installed") from None
            if key not in pinned or req.extras:
                pinned[key] = version
                todo.append((req.name, frozenset(req.extras)))
    pinned.pop(canonicalize_name(root), None)
    return pinned


def main() -> None:
    lines = [f"{name}=={version}" for name, version in sorted(runtime_closure("igbridge").items())]
    print(HEADER + "\n".join(lines))


if __name__ == "__main__":
    main()
