"""A small Graph API client: customer profiles and mentioned comments, cached.

Lookups enrich a message; they never hold it up. Every failure returns None (the
message still goes through) and is cached briefly so a broken Graph API is not hammered.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import aiohttp

from ..http import Answer, close_session, fetch, new_session

log = logging.getLogger(__name__)

PROFILE_FIELDS = (
    "name,username,profile_pic,follower_count,is_user_follow_business,"
    "is_business_follow_user,is_verified_user"
)


@dataclass(frozen=True, slots=True)
class GraphError:
    """A Graph API failure: ``{"error": {"code", "error_subcode", "message"}}``.

    ``status`` 0 means no HTTP answer (connection failure, timeout).
    """

    status: int
    code: int | None
    subcode: int | None
    message: str

    @classmethod
    def from_response(cls, resp: Answer) -> GraphError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return cls(resp.status, None, None, f"HTTP {resp.status}")
        return cls(
            resp.status,
            _opt_int(err.get("code")),
            _opt_int(err.get("error_subcode")),
            str(err.get("message") or "")[:300],
        )


def _opt_int(value: Any) -> int | None:
    """Graph error codes are numbers; some proxies hand them on as digit strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True, slots=True)
class Profile:
    igsid: str
    username: str | None = None
    name: str | None = None
    profile_pic: str | None = None
    follower_count: int | None = None
    is_user_follow_business: bool | None = None
    is_business_follow_user: bool | None = None
    is_verified_user: bool | None = None


@dataclass(frozen=True, slots=True)
class MentionedComment:
    id: str
    text: str
    username: str | None


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """A bounded LRU with a per-entry expiry."""

    def __init__(self, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_size
        self._clock = clock

    def get(self, key: K) -> tuple[bool, V | None]:
        hit = self._data.get(key)
        if hit is None or hit[0] < self._clock():
            self._data.pop(key, None)
            return False, None
        self._data.move_to_end(key)
        return True, hit[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _opt_bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    return value if isinstance(value, bool) else None


class GraphClient:
    """Profile and mention lookups; ``http`` is shared with the Send API client.

    Made inside a running event loop (it opens its session)."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float = 3.0,
        profile_ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        # Lean: the Send API's POSTs go out on this session too (``http``).
        self._http = new_session(timeout=timeout, lean=True)
        self._auth = {"Authorization": f"Bearer {access_token}"}
        self._profile_ttl = profile_ttl
        self._failure_ttl = failure_ttl
        self._profiles: TTLCache[str, Profile | None] = TTLCache(cache_size, clock)
        self.lookups = 0  # requests actually sent, for tests and metrics

    @property
    def http(self) -> aiohttp.ClientSession:
        return self._http

    async def aclose(self) -> None:
        await close_session(self._http)

    def set_access_token(self, access_token: str) -> None:
        """Use a rotated token from now on (the Send API client has its own copy)."""
        self._auth = {"Authorization": f"Bearer {access_token}"}

    async def check_token(self) -> GraphError | None:
        """Whether Meta takes the access token: ``GET /me?fields=id``, the cheapest call
        both Facebook Login Page tokens and Instagram Login tokens may make. None: it works.
        Not cached: the caller paces it."""
        body = await self._get("me", {"fields": "id"})
        return body if isinstance(body, GraphError) else None

    async def _get(self, node: str, params: dict[str, str]) -> dict[str, Any] | GraphError:
        self.lookups += 1
        try:
            url = f"{self._base}/{quote(node, safe='')}"
            resp = await fetch(self._http, "GET", url, params=params, headers=self._auth)
        except Exception as exc:  # a lookup only enriches a message: never let it raise
            return GraphError(0, None, None, type(exc).__name__)
        if resp.status != 200:
            return GraphError.from_response(resp)
        try:
            body = resp.json()
        except ValueError:
            return GraphError(resp.status, None, None, "unreadable body")
        return body if isinstance(body, dict) else GraphError(200, None, None, "not an object")

    async def get_profile(self, igsid: str) -> Profile | None:
        """The customer's profile (cached), or None when Graph cannot tell; never raises."""
        hit, cached = self._profiles.get(igsid)
        if hit:
            return cached
        body = await self._get(igsid, {"fields": PROFILE_FIELDS})
        if isinstance(body, GraphError):
            log.info(
                "profile lookup failed",
                extra={"status": body.status, "code": body.code, "error": body.message},
            )
            self._profiles.put(igsid, None, self._failure_ttl)
            return None
        profile = Profile(
            igsid=igsid,
            username=_opt_str(body, "username"),
            name=_opt_str(body, "name"),
            profile_pic=_opt_str(body, "profile_pic"),
            follower_count=_opt_int(body.get("follower_count")),
            is_user_follow_business=_opt_bool(body, "is_user_follow_business"),
            is_business_follow_user=_opt_bool(body, "is_business_follow_user"),
            is_verified_user=_opt_bool(body, "is_verified_user"),
        )
        self._profiles.put(igsid, profile, self._profile_ttl)
        return profile

    async def get_mentioned_comment(
        self, account_id: str, comment_id: str
    ) -> MentionedComment | None:
        """The comment that mentioned the business, or None; never raises."""
        fields = f"mentioned_comment.comment_id({comment_id}){{id,text,timestamp,username}}"
        body = await self._get(account_id, {"fields": fields})
        if isinstance(body, GraphError):
            log.info(
                "mention lookup failed",
                extra={"status": body.status, "code": body.code, "error": body.message},
            )
            return None
        comment = body.get("mentioned_comment")
        if not isinstance(comment, dict):
            log.info("mention lookup returned no comment", extra={"comment_id": comment_id})
            return None
        text = comment.get("text")
        return MentionedComment(
            id=str(comment.get("id") or comment_id),
            text=text if isinstance(text, str) else "",
            username=_opt_str(comment, "username"),
        )
