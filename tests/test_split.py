"""Splitting replies for Instagram's 1000 bytes on grapheme boundaries."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from igbridge.relay.pipeline.split import split_text

EMOJI = st.sampled_from(["👨‍👩‍👧‍👦", "🇧🇷", "👍🏾", "❤️‍🔥", "é", "你", "ا", " ", "\n", "a", "🧑🏽‍🚀"])


@settings(max_examples=200, deadline=None)
@given(st.lists(EMOJI, min_size=0, max_size=900))
def test_split_never_breaks_a_grapheme_and_respects_the_limit(pieces: list[str]) -> None:
    text = "".join(pieces)
    parts = split_text(text)
    assert all(0 < len(p.encode("utf-8")) <= 1000 for p in parts)

    # Only spaces at part edges may go; every grapheme survives whole and in order.
    def strip(s: str) -> list[str]:
        return [g for g in regex.findall(r"\X", s) if g != " "]

    assert [g for p in parts for g in strip(p)] == strip(text)


def test_split_prefers_line_and_word_breaks() -> None:
    text = ("word " * 150) + "\n" + ("más " * 150)
    parts = split_text(text)
    assert all(not p.endswith("wor") for p in parts)
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert parts[0].startswith("word word")


def test_short_text_is_one_part() -> None:
    assert split_text("Olá 👋") == ["Olá 👋"]
    assert split_text("") == []
