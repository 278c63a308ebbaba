"""Breaking bot-on-bot loops: an automated sender answering automated replies.

A customer's message that arrives within ``reply_seconds`` of a bot reply, and repeats
(near-)identical text, counts as one bounce; ``bounces`` of them within ``window_seconds``
is a loop. Then bot replies to that customer are held back — a human agent can still
answer, and the customer's messages still reach Genesys, marked — until the customer has
been quiet for ``quiet_seconds``.

With one relay the state lives in memory. Replicas share it through the store (one small
record per customer, updated by compare-and-set, forgotten once it can no longer matter):
a customer's inbound message and the bot's reply are often handled by different replicas.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..records import LOOP_STATE, LoopActivity
from ..store.base import Store
from .customer_state import CustomerState

T = TypeVar("T")


class LoopRules(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    reply_seconds: float = Field(default=10.0, gt=0, alias="replySeconds")
    bounces: int = Field(default=3, ge=2)
    window_seconds: float = Field(default=120.0, gt=0, alias="windowSeconds")
    quiet_seconds: float = Field(default=300.0, gt=0, alias="quietSeconds")
    similarity: float = Field(default=0.85, gt=0, le=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    in_loop: bool  # the customer is in a loop (bot replies are held)
    found: bool = False  # ... and this message is the one that revealed it


def _similar(a: str, b: str, threshold: float) -> bool:
    a, b = " ".join(a.casefold().split()), " ".join(b.casefold().split())
    if a == b:
        return True
    # Cheap upper bounds first (ratio() <= quick_ratio() <= real_quick_ratio(), the last
    # from the lengths alone), so texts far apart never build a matcher.
    if 2.0 * min(len(a), len(b)) / (len(a) + len(b)) < threshold:
        return False
    matcher = difflib.SequenceMatcher(None, a, b)
    return matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold


class LoopBreaker:
    def __init__(
        self,
        rules: LoopRules,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
    ) -> None:
        self._rules = rules
        self._clock = clock  # wall time: replicas compare each other's timestamps
        # Past this, a customer's state holds nothing that could still count.
        ttl = rules.window_seconds + rules.quiet_seconds + rules.reply_seconds
        self._state = CustomerState(
            LOOP_STATE,
            new=LoopActivity,
            ttl_seconds=ttl,
            store=store,
            clock=clock,
        )
        self.loops_detected = 0

    async def _change(self, customer: str, change: Callable[[LoopActivity], T]) -> T:
        return await self._state.change(customer, change)

    async def bot_replied(self, customer: str) -> None:
        now = self._clock()

        def change(state: LoopActivity) -> None:
            state.last_bot_reply = now

        await self._change(customer, change)

    async def customer_wrote(self, customer: str, text: str) -> Verdict:
        """Record an inbound message: is the customer in a loop (just found or ongoing)?"""
        now = self._clock()
        rules = self._rules

        def change(state: LoopActivity) -> Verdict:
            if state.broken_until is not None and now - state.last_inbound >= rules.quiet_seconds:
                state.broken_until = None  # calmed down: back to normal
                state.bounces.clear()
            state.last_inbound = now
            quick = (
                state.last_bot_reply is not None
                and now - state.last_bot_reply <= rules.reply_seconds
            )
            # Only a quick answer can bounce: the (costly) similarity is compared only then.
            if quick and any(_similar(text, seen, rules.similarity) for seen in state.last_texts):
                state.bounces.append(now)
            state.last_texts.append(text)
            while state.bounces and now - state.bounces[0] > rules.window_seconds:
                state.bounces.popleft()
            if state.broken_until is None and len(state.bounces) >= rules.bounces:
                state.broken_until = now + rules.quiet_seconds
                return Verdict(in_loop=True, found=True)
            return Verdict(in_loop=state.broken_until is not None)

        verdict = await self._change(customer, change)
        if verdict.found:
            self.loops_detected += 1
        return verdict

    async def holding(self, customer: str) -> bool:
        """Bot replies to this customer are held back right now."""
        now = self._clock()

        def change(state: LoopActivity) -> bool:
            if state.broken_until is None:
                return False
            if now - state.last_inbound >= self._rules.quiet_seconds:
                state.broken_until = None
                state.bounces.clear()
                return False
            return True

        return await self._change(customer, change)
