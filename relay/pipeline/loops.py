"""Breaking bot-on-bot loops: an automated sender answering automated replies.

A customer's message that arrives within ``reply_seconds`` of a bot reply, and repeats
(near-)identical text, counts as one bounce; ``bounces`` of them within ``window_seconds``
is a loop. Then bot replies to that customer are held back — a human agent can still
answer, and the customer's messages still reach Genesys, marked — until the customer has
been quiet for ``quiet_seconds``. State is per relay process.
"""

from __future__ import annotations

import difflib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class LoopRules(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    reply_seconds: float = Field(default=10.0, gt=0, alias="replySeconds")
    bounces: int = Field(default=3, ge=2)
    window_seconds: float = Field(default=120.0, gt=0, alias="windowSeconds")
    quiet_seconds: float = Field(default=300.0, gt=0, alias="quietSeconds")
    similarity: float = Field(default=0.85, gt=0, le=1)


@dataclass
class _Customer:
    last_bot_reply: float | None = None
    last_texts: deque[str] = field(default_factory=lambda: deque(maxlen=4))
    bounces: deque[float] = field(default_factory=deque)
    broken_until: float | None = None
    last_inbound: float = 0.0


def _similar(a: str, b: str, threshold: float) -> bool:
    a, b = " ".join(a.casefold().split()), " ".join(b.casefold().split())
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= threshold


class LoopBreaker:
    def __init__(self, rules: LoopRules, clock: Callable[[], float] = time.monotonic) -> None:
        self._rules = rules
        self._clock = clock
        self._customers: dict[str, _Customer] = {}
        self.loops_detected = 0

    def _state(self, customer: str) -> _Customer:
        return self._customers.setdefault(customer, _Customer())

    def bot_replied(self, customer: str) -> None:
        self._state(customer).last_bot_reply = self._clock()

    def customer_wrote(self, customer: str, text: str) -> bool:
        """Record an inbound message; True when it is part of a loop (just found or ongoing)."""
        now = self._clock()
        state = self._state(customer)
        if state.broken_until is not None and now - state.last_inbound >= self._rules.quiet_seconds:
            state.broken_until = None  # calmed down: back to normal
            state.bounces.clear()
        state.last_inbound = now
        quick = (
            state.last_bot_reply is not None
            and now - state.last_bot_reply <= self._rules.reply_seconds
        )
        echoing = any(_similar(text, seen, self._rules.similarity) for seen in state.last_texts)
        state.last_texts.append(text)
        if quick and echoing:
            state.bounces.append(now)
        while state.bounces and now - state.bounces[0] > self._rules.window_seconds:
            state.bounces.popleft()
        if state.broken_until is None and len(state.bounces) >= self._rules.bounces:
            state.broken_until = now + self._rules.quiet_seconds
            self.loops_detected += 1
            return True
        return state.broken_until is not None

    def holding(self, customer: str) -> bool:
        """Bot replies to this customer are held back right now."""
        state = self._customers.get(customer)
        if state is None or state.broken_until is None:
            return False
        if self._clock() - state.last_inbound >= self._rules.quiet_seconds:
            state.broken_until = None
            state.bounces.clear()
            return False
        return True
