"""``/webhooks/instagram``: Meta's verification handshake and signed event deliveries."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import records
from ..meta.events import FORWARDED_KINDS, EventKind, InstagramEvent, parse_webhook
from ..pipeline.window import CommentOrigin
from ..records import COMMENT_ORIGIN, INBOUND, OWN_MESSAGES
from ..store.base import NewJob, StoreUnavailable
from .base import SignedWebhook, reject
from .signature import SignatureCheck, verify_meta_signature, verify_token_matches

log = logging.getLogger(__name__)

# What a customer does that opens (or keeps open) Meta's 24-hour reply window.
WINDOW_KINDS = frozenset(
    {EventKind.MESSAGE, EventKind.POSTBACK, EventKind.REACTION, EventKind.REFERRAL}
)
ROUTE = "/webhooks/instagram"
QUIET_SKIPS = frozenset({"standby"})


def _latest_messages(events: list[InstagramEvent]) -> dict[str, int]:
    """Each customer's latest window-opening message time in the batch (Meta's clock)."""
    latest: dict[str, int] = {}
    for event in events:
        if event.kind in WINDOW_KINDS:
            latest[event.customer_id] = max(latest.get(event.customer_id, 0), event.timestamp_ms)
    return latest


class InstagramWebhook(SignedWebhook):
    route = ROUTE
    name = "instagram"

    def check_signature(self, raw: bytes, header: str | None) -> SignatureCheck:
        return verify_meta_signature(raw, header, self._settings.app_secrets)

    async def _unforwarded_reason(self, event: InstagramEvent) -> str:
        """Echoes of what the relay sent are told apart from what people sent in the app."""
        if event.kind is not EventKind.ECHO:
            return event.kind.value
        try:
            ours = await records.get(self._store, OWN_MESSAGES, event.dedupe_key)
        except StoreUnavailable:
            return "echo"
        return "own_echo" if ours else "echo"

    async def _remember_comments(self, events: list[InstagramEvent]) -> None:
        """For a conversation that starts with a comment: which comment a reply answers."""
        for event in events:
            if event.kind is EventKind.COMMENT:
                origin = CommentOrigin(event.dedupe_key, event.timestamp_ms)
                await records.put(self._store, COMMENT_ORIGIN, event.customer_id, origin)

    async def handshake(self, request: Request) -> Response:
        params = request.query_params
        expected = self._settings.meta_verify_token.get_secret_value()
        if params.get("hub.mode") == "subscribe" and verify_token_matches(
            params.get("hub.verify_token"), expected
        ):
            log.info("meta webhook verification accepted")
            return PlainTextResponse(params.get("hub.challenge", ""))
        log.warning("meta webhook verification refused: wrong mode or verify token")
        return PlainTextResponse("verification failed", status_code=403)

    async def handle(self, request: Request) -> Response:
        read = await self.read_signed_json(request)
        if isinstance(read, Response):
            return read
        _, body = read
        if not isinstance(body, dict) or body.get("object") != "instagram":
            log.warning("instagram webhook refused: not an instagram object")
            return reject(400, 'expected a JSON object with "object": "instagram"')

        result = parse_webhook(
            body,
            account_id=self._settings.instagram_account_id,
            entry_ids=self._settings.instagram_entry_ids,
            standby=self._settings.standby,
        )
        for skipped in result.skipped:
            self._metrics.skipped.labels(skipped.reason).inc()
            # Standby copies are routine while another app owns threads: no warning each.
            level = logging.INFO if skipped.reason in QUIET_SKIPS else logging.WARNING
            log.log(
                level,
                "webhook item skipped",
                extra={"reason": skipped.reason, "detail": skipped.detail},
            )
        jobs: list[NewJob] = []
        for event in result.events:
            self._metrics.received.labels(event.kind.value).inc()
            if event.kind in FORWARDED_KINDS:
                jobs.append(
                    NewJob(event.customer_id, event.dedupe_key, event.timestamp_ms, event.to_json())
                )
            else:
                self._metrics.not_forwarded.labels(await self._unforwarded_reason(event)).inc()
        accepted = duplicates = 0
        if jobs:
            try:
                stored = await self._store.enqueue(INBOUND, jobs, _latest_messages(result.events))
            except StoreUnavailable as exc:
                # 503 makes Meta retry later: better than a 200 for events we could not keep.
                log.error("instagram webhook not stored: %s", exc)
                return reject(503, "store unavailable, retry later")
            accepted, duplicates = stored.accepted, stored.duplicates
            try:
                await self._remember_comments(result.events)
            except StoreUnavailable as exc:
                log.error("comment reply records not updated: %s", exc)
            if duplicates:
                self._metrics.duplicates.labels(INBOUND).inc(duplicates)
            if accepted:
                self._on_stored()
        return JSONResponse(
            {
                "events": len(result.events),
                "accepted": accepted,
                "duplicates": duplicates,
                "skipped": len(result.skipped),
            }
        )
