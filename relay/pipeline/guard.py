"""The spam filter in front of the agents: rules per channel, each verdict named by the
rule that matched, so it can be counted, logged and explained.

Rules apply to what a customer wrote (texts, captions of shares); emoji-only and
non-Latin messages are ordinary messages. The behaviour rules' counters (repeats, rates)
live in memory for one relay and in the store for replicas (``customer_state``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..meta.events import Comment, EventKind, InstagramEvent, Message
from ..records import SPAM_STATE, SenderActivity
from ..store.base import Store
from .customer_state import CustomerState
from .loops import LoopRules

URL = re.compile(
    r"(?i)\b(?:https?://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|io|ly|me|link|xyz|top|shop|info|biz)(?:/\S*)?\b"
)


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    messages: int = Field(default=20, gt=0)
    per_seconds: float = Field(default=60.0, gt=0, alias="perSeconds")


class GuardRules(BaseModel):
    """The ``guard`` section of an InstagramChannel (and ``IGBRIDGE_GUARD``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    blocked_senders: list[str] = Field(default_factory=list, alias="blockedSenders")
    keywords: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    # Every rule is off until the channel turns it on: a frustrated customer who repeats
    # "hello?" must reach an agent unless the brand decided otherwise.
    link_only: bool = Field(default=False, alias="blockLinkOnly")
    max_repeats: int | None = Field(default=None, ge=1, alias="maxRepeats")
    repeat_window_seconds: float = Field(default=600.0, gt=0, alias="repeatWindowSeconds")
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")
    action: Literal["drop", "flag"] = "drop"
    # Bot-on-bot loop breaking is on unless the channel tunes it (it only ever holds back
    # bot replies; people still reach each other).
    loops: LoopRules = Field(default_factory=LoopRules)

    @field_validator("patterns")
    @classmethod
    def _compilable(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        return value


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str | None  # None: not spam
    detail: str = ""

    @property
    def spam(self) -> bool:
        return self.rule is not None


CLEAN = Verdict(None)


def customer_text(event: InstagramEvent) -> str:
    """What the customer wrote, for the rules (never used to change the message)."""
    match event.body:
        case Message(text=text) | Comment(text=text):
            return text or ""
    return ""


class SpamFilter:
    def __init__(
        self,
        rules: GuardRules,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:
        self._rules = rules
        self._clock = clock  # wall time: replicas compare each other's timestamps
        self._blocked = {s.strip() for s in rules.blocked_senders}
        self._keywords = [k.casefold() for k in rules.keywords if k.strip()]
        self._patterns = [re.compile(p, re.IGNORECASE) for p in rules.patterns]
        windows = [rules.repeat_window_seconds]
        if rules.rate_limit is not None:
            windows.append(rules.rate_limit.per_seconds)
        self._senders = CustomerState(
            SPAM_STATE,
            new=SenderActivity,
            ttl_seconds=max(windows),
            store=store,
            clock=clock,
        )

    @property
    def action(self) -> str:
        return self._rules.action

    async def check(self, event: InstagramEvent, *, count: bool = True) -> Verdict:
        """The verdict on one message. ``count=False`` (a retried delivery) applies only
        the content rules: the message was counted toward rates and repeats already."""
        if event.kind not in (EventKind.MESSAGE, EventKind.COMMENT):
            return CLEAN
        sender = event.customer_id
        if sender in self._blocked:
            return Verdict("blocked_sender", f"sender {sender} is blocked")
        now = self._clock()
        text = customer_text(event)
        verdict = self._content(text)
        if verdict.spam:
            return verdict
        if not count or (self._rules.rate_limit is None and self._rules.max_repeats is None):
            return CLEAN
        return await self._senders.change(sender, lambda state: self._behaviour(state, text, now))

    def _content(self, text: str) -> Verdict:
        folded = text.casefold()
        for keyword in self._keywords:
            if keyword in folded:
                return Verdict("keyword", f"contains {keyword!r}")
        for pattern in self._patterns:
            if pattern.search(text):
                return Verdict("pattern", f"matches {pattern.pattern!r}")
        if self._rules.link_only and text.strip():
            rest = URL.sub("", text).strip()
            if rest != text.strip() and not any(ch.isalnum() for ch in rest):
                return Verdict("link_only", "a message that is only a link")
        return CLEAN

    def _behaviour(self, state: SenderActivity, text: str, now: float) -> Verdict:
        limit = self._rules.rate_limit
        if limit is not None:
            times = state.times
            while times and now - times[0] > limit.per_seconds:
                times.popleft()
            times.append(now)
            if len(times) > limit.messages:
                return Verdict(
                    "rate_limit", f"more than {limit.messages} messages in {limit.per_seconds:.0f}s"
                )
        if self._rules.max_repeats is not None and text.strip():
            digest = hashlib.sha256(" ".join(text.casefold().split()).encode()).hexdigest()
            recent = state.recent
            while recent and now - recent[0][0] > self._rules.repeat_window_seconds:
                recent.popleft()
            recent.append((now, digest))
            repeats = sum(1 for _, d in recent if d == digest)
            if repeats > self._rules.max_repeats:
                return Verdict("repeated", f"the same text {repeats} times")
        return CLEAN


def parse_rules(raw: str | dict[str, Any] | None) -> GuardRules:
    if raw is None or raw == "":
        return GuardRules()
    if isinstance(raw, str):
        return GuardRules.model_validate_json(raw)
    return GuardRules.model_validate(raw)
