"""Every field of every webhook fixture, mutated to a wrong type: parsing refuses it with a
reason or yields what the handlers can take, and no exception escapes either.

A signature proves only who sent the bytes; the audit that found handler crashes used
signed, well-formed webhooks with one field changed. This does the same, bounded and
reproducible: each example changes one to three fields of one fixture.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from igbridge.relay.genesys.outbound import (
    Refused,
    message_time,
    parse_outbound,
)
from igbridge.relay.meta.events import InstagramEvent, parse_webhook
from igbridge.relay.meta.media import host_allowed
from igbridge.relay.pipeline.inbound import Facts, build, media_checks
from igbridge.relay.pipeline.outbound import message_parts, typing_parts
from igbridge.relay.pipeline.timefmt import format_time
from igbridge.relay.pipeline.window import CLOCK_SKEW_MS, decide
from tests.fixtures_loader import ACCOUNT_ID, FIXTURES, load_fixture_json

GENESYS = Path(__file__).parent / "fixtures" / "genesys"
INSTAGRAM_BODIES = {p.stem: load_fixture_json(p.stem) for p in sorted(FIXTURES.glob("*.json"))}
GENESYS_BODIES = {p.stem: json.loads(p.read_bytes()) for p in sorted(GENESYS.glob("*.json"))}
NOW_MS = 1767265200000  # an hour after the fixtures' time
WEEK_MS = 7 * 86_400_000

Path_ = tuple[str | int, ...]


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every field and list item of a body, outermost first."""
    found: list[Path_] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


INSTAGRAM_PATHS = {name: paths(body) for name, body in INSTAGRAM_BODIES.items()}
GENESYS_PATHS = {name: paths(body) for name, body in GENESYS_BODIES.items()}

lone_surrogates = st.sampled_from(["\ud800", "\udfff", "x\ud83d", "\ud83d\ud83d"])
# Wrong types and hostile values, each a JSON value (lone surrogates are \\u escapes).
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**53, 2**63, 10**30, 253_402_300_800_000]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    lone_surrogates,
    st.sampled_from(
        [
            "",
            "https://[::1",
            "http://[x/y",
            "https://cdn.example:99999/a",
            "0000-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-05:00",
            "not a time",
        ]
    ),
    st.lists(st.integers() | st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers() | st.none(), max_size=2),
    st.just({"url": "https://[::1", "type": 1}),
)


def mutated(body: Any, changes: list[tuple[Path_, Any]]) -> Any:
    body = copy.deepcopy(body)
    for path, value in changes:
        target = body
        try:
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced this field's parent
    return body


def changes_of(all_paths: dict[str, list[Path_]]) -> st.SearchStrategy[tuple[str, list[Any]]]:
    return st.sampled_from(sorted(all_paths)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.lists(st.tuples(st.sampled_from(all_paths[name]), hostile), min_size=1, max_size=3),
        )
    )


FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def signed_bytes(body: Any) -> bytes:
    """As Meta and Genesys send it: non-ASCII as \\u escapes, so lone surrogates survive."""
    return json.dumps(body).encode("ascii")


def instagram_handles(body: Any) -> None:
    """Parse as the splitter does, then everything a handler does with each event."""
    body = json.loads(signed_bytes(body))
    result = parse_webhook(body, ACCOUNT_ID, now_ms=lambda: NOW_MS, horizon_ms=WEEK_MS)
    for skipped in result.skipped:
        assert skipped.reason.isidentifier()
        skipped.detail.encode("utf-8")  # a log line can carry it
    for event in result.events:
        # What the splitter stores, the worker decodes, and the handler does with it.
        stored = InstagramEvent.from_json(event.to_json())
        assert stored.body == event.body
        assert 0 < event.timestamp_ms <= NOW_MS + CLOCK_SKEW_MS
        format_time(event.timestamp_ms)
        for url, _ in media_checks(event.body):
            host_allowed(url, ["*.fbcdn.net"])
        build(event, Facts())
        decide(NOW_MS, event.timestamp_ms, human=True, tag_allowed=True)


def genesys_handles(body: Any) -> None:
    """Parse as the Genesys door does, then what the outbound worker does with it."""
    msg = parse_outbound(signed_bytes(body))
    if isinstance(msg, str):
        assert msg  # the 400's reason
        return
    when = message_time(msg, NOW_MS, WEEK_MS)
    if isinstance(when, Refused):
        assert when.detail
        return
    assert 0 <= when <= NOW_MS + CLOCK_SKEW_MS
    message_parts(msg)  # every item sent or refused
    typing_parts(msg)


@FUZZ
@given(changes_of(INSTAGRAM_PATHS))
def test_a_mutated_instagram_webhook_parses_or_skips_and_its_events_can_be_handled(
    case: tuple[str, list[Any]],
) -> None:
    name, changes = case
    instagram_handles(mutated(INSTAGRAM_BODIES[name], changes))


@FUZZ
@given(changes_of(GENESYS_PATHS))
def test_a_mutated_genesys_message_is_refused_with_a_reason_or_can_be_sent(
    case: tuple[str, list[Any]],
) -> None:
    name, changes = case
    genesys_handles(mutated(GENESYS_BODIES[name], changes))


# One of each wrong type, at every field of every fixture: the sweep the random
# combinations above cannot promise to cover.
EVERY_FIELD_VALUES: list[Any] = [
    None,
    True,
    7,
    -1,
    10**30,
    1.5,
    "x",
    "\ud800",
    [],
    [1],
    {},
    "https://[::1",
    "0000-01-01T00:00:00Z",
]


def test_every_field_of_every_fixture_with_each_wrong_type() -> None:
    failures: list[str] = []
    for bodies, all_paths, handles in (
        (INSTAGRAM_BODIES, INSTAGRAM_PATHS, instagram_handles),
        (GENESYS_BODIES, GENESYS_PATHS, genesys_handles),
    ):
        for name, body in bodies.items():
            for path in all_paths[name]:
                for value in EVERY_FIELD_VALUES:
                    try:
                        handles(mutated(body, [(path, value)]))
                    except Exception as exc:  # collected: every failure is named below
                        failures.append(f"{name} {path} = {value!r}: {exc!r}"[:300])
    assert failures == []
