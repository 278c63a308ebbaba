"""Reconciling one InstagramChannel: credentials, the Genesys integration, the relay's
workload, Meta's webhook subscription, and a status that says what to fix.

The I/O lives here; what the channel should be is decided in plan.py (and what to repair
on its integration in drift.py). Handlers (handlers.py) stay thin and call ``reconcile`` /
``finalize`` here.

A channel's reconciles and its finalize take turns (one lock per channel): kopf runs the
resync timer beside the delete handler, and a resync waiting on a slow Genesys must not
find the integration gone (the delete handler removed it) and create a fresh one. The
finalize marks the channel deleting before it waits for its turn, and a reconcile checks
that mark, and the channel's deletionTimestamp as the apiserver has it now, right before
it would create. Cancelling the in-flight reconcile instead could cut a create whose
request Genesys already has, leaving an integration nobody records.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from igbridge.relay.channel_status import API_VERSION, GROUP, KIND, RelayReport
from igbridge.relay.genesys.errors import AuthError, GenesysError, PermanentError, TransientError

from . import builders, metrics, plan
from .channel import Channel
from .conditions import FALSE, TRUE, UNKNOWN, Conditions
from .drift import integration_repair, ref_id, secret_digest
from .events import Emit, Event, no_events, normal, transitions, warning
from .integrations import CreateStillPending, Integrations
from .kube import Kube
from .preflight import (
    GraphFailure,
    Refreshed,
    check_public_url,
    expiring,
    iso,
    judge_identity,
    judge_token_info,
    parse_iso,
    refresh_due,
)
from .problems import (
    Deleting,
    RetryLater,
    SpecProblem,
    credentials_refused,
    invalid_spec,
    secret_key_missing,
    secret_missing,
)
from .relay_verdict import relay_available
from .settings import OperatorSettings
from .spec import ChannelSpec, Login, parse_spec
from .subscriptions import Subscription
from .tokens import MetaTokens

log = logging.getLogger(__name__)

ADOPT_ANNOTATION = f"{GROUP}/integration-id"
# On the user's Meta Secret, written with a refreshed token: when it runs out, and which
# token that is about (a token someone put in by hand has an unknown expiry).
TOKEN_EXPIRES_ANNOTATION = f"{GROUP}/token-expires-at"
TOKEN_DIGEST_ANNOTATION = f"{GROUP}/token-sha256"
APP_ID_KEY = "app-id"  # optional in the Meta Secret: lets debug_token run (Facebook Login)
# In the status: which signing secret Genesys last got (a digest; Genesys never returns it).
SECRET_DIGEST_STATUS = "signingSecretSha256"  # noqa: S105 (a field name)

IntegrationsFactory = Callable[[ChannelSpec, str, str], Integrations]
SubscriptionCheck = Callable[[ChannelSpec, str], Awaitable[Subscription]]


def _decode(secret: dict[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    out = {k: base64.b64decode(v).decode("utf-8") for k, v in data.items() if isinstance(v, str)}
    for key, value in ((secret or {}).get("stringData") or {}).items():
        out.setdefault(key, value)
    return out


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Verdict:
    """A pre-flight verdict on one token, kept until ``until`` (monotonic seconds)."""

    key: tuple[str, ...]
    until: float
    problem: SpecProblem | None
    note: str
    expires_at: float | None
    debugged: bool = False  # debug_token answered: a missing expiry means none


@dataclass(slots=True)
class _Turn:
    """One channel's turn-taking between reconciles and its finalize."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    deleting: bool = False


def _record(conds: Conditions, problem: SpecProblem) -> None:
    conds.set(problem.condition, FALSE, problem.reason, problem.message)
    if problem.condition == "CredentialsReady":
        # Nothing can be synced without them.
        conds.set("Synced", FALSE, "WaitingForCredentials", problem.message)
        integration = conds.get("IntegrationReady")
        if integration is None or integration.get("status") != TRUE:
            # Not created, or not checkable, without them: one cause, named alike in both
            # (a Meta token problem leaves an integration already in place True).
            conds.set(
                "IntegrationReady",
                FALSE,
                problem.reason,
                f"waiting for CredentialsReady: {problem.message}",
            )


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        integrations: IntegrationsFactory,
        subscriptions: SubscriptionCheck,
        settings: OperatorSettings,
        tokens: MetaTokens | None = None,
    ) -> None:
        self._kube = kube
        self._integrations = integrations
        self._subscribe = subscriptions
        self._settings = settings
        self._tokens = tokens
        # Per channel uid: the last pre-flight verdict, and the last failed refresh (token
        # digest, monotonic time) so neither Meta call repeats on every resync.
        self._verdicts: dict[str, _Verdict] = {}
        self._refresh_failed: dict[str, tuple[str, float]] = {}
        self._turns: dict[str, _Turn] = {}  # per channel uid, until it is finalized

    async def _status(self, channel: Channel, status: dict[str, Any]) -> None:
        await self._kube.patch_status(API_VERSION, KIND, channel.namespace, channel.name, status)

    async def _secret(self, channel: Channel, need: plan.SecretNeed) -> dict[str, str]:
        return (await self._secret_with_meta(channel, need))[0]

    async def _secret_with_meta(
        self, channel: Channel, need: plan.SecretNeed
    ) -> tuple[dict[str, str], dict[str, Any]]:
        found = await self._kube.get("v1", "Secret", channel.namespace, need.name)
        if found is None:
            raise secret_missing(f"Secret {channel.namespace}/{need.name} not found")
        data = _decode(found)
        missing = [k for k in need.keys if not data.get(k)]
        if missing:
            raise secret_key_missing(
                f"Secret {channel.namespace}/{need.name} has no key {missing[0]!r}"
            )
        return data, dict(found.get("metadata") or {})

    async def _finish(
        self, channel: Channel, conds: Conditions, status: dict[str, Any], emit: Emit
    ) -> None:
        final = conds.finish()
        await self._status(channel, {**status, "conditions": final})
        # After the patch: an event never tells of a status that was not written.
        for event in transitions(channel.status.get("conditions"), final):
            emit(event)

    async def reconcile(self, channel: Channel, emit: Emit = no_events) -> None:
        turn = self._turns.setdefault(channel.uid, _Turn())
        async with turn.lock:
            if turn.deleting:
                log.info("channel is being deleted: reconcile skipped", extra=_who(channel))
                return
            try:
                await self._reconcile_turn(channel, turn, emit)
            except Deleting:
                log.info("channel deleted mid-reconcile: stopped", extra=_who(channel))

    async def _reconcile_turn(self, channel: Channel, turn: _Turn, emit: Emit) -> None:
        conds = Conditions(channel.status.get("conditions"), channel.generation)
        status: dict[str, Any] = {"observedGeneration": channel.generation}
        try:
            spec = parse_spec(channel.spec)
            status["webhookUrls"] = {
                "instagram": spec.instagram_webhook_url,
                "genesys": spec.genesys_webhook_url,
                "dataDeletion": spec.data_deletion_url,
            }
            status["retention"] = spec.retention.status()
            await self._reconcile(channel, spec, turn, conds, status, emit)
        except SpecProblem as problem:
            _record(conds, problem)
            await self._finish(channel, conds, status, emit)
            raise
        except RetryLater as exc:
            conds.set("Synced", FALSE, "GenesysUnavailable", str(exc))
            await self._finish(channel, conds, status, emit)
            raise
        conds.set("Synced", TRUE, "Reconciled", "every owned object matches the spec")
        self._relay_condition(channel, conds)
        await self._finish(channel, conds, status, emit)

    async def refresh_relay(self, channel: Channel, emit: Emit = no_events) -> bool:
        """Re-judge only ``RelayAvailable`` (and so ``Ready``) from what the relay pods
        reported, without touching Genesys or the workload: cheap enough to run on every
        report. Patches only when the verdict changed; True if it did."""
        conds = Conditions(channel.status.get("conditions"), channel.generation)
        old = conds.get("RelayAvailable") or {}
        self._relay_condition(channel, conds)
        new = conds.get("RelayAvailable") or {}
        if (old.get("status"), old.get("reason")) == (new.get("status"), new.get("reason")):
            return False
        final = conds.finish()
        await self._status(channel, {"conditions": final})
        for event in transitions(channel.status.get("conditions"), final):
            emit(event)
        return True

    def _relay_condition(self, channel: Channel, conds: Conditions) -> None:
        verdict = relay_available(
            RelayReport.read(channel.status.get("relay")),
            now=time.time(),
            grace=self._settings.relay_grace_seconds,
        )
        conds.set("RelayAvailable", verdict.status, verdict.reason, verdict.message)

    async def _reconcile(
        self,
        channel: Channel,
        spec: ChannelSpec,
        turn: _Turn,
        conds: Conditions,
        status: dict[str, Any],
        emit: Emit,
    ) -> None:
        bad_url = check_public_url(spec.public_url)
        if bad_url is not None:
            raise bad_url
        needs = plan.secrets_needed(spec)
        found: dict[str, dict[str, str]] = {}
        for need in needs:
            data, meta = await self._secret_with_meta(channel, need)
            if need.role == "meta":
                data = await self._meta_token(channel, spec, need, data, meta, conds, status, emit)
            found[need.role] = data
        own = await self._generated_secret(channel, emit)
        note = self._verdicts[channel.uid].note if channel.uid in self._verdicts else ""
        conds.set(
            "CredentialsReady",
            TRUE,
            "SecretsFound",
            f"{', '.join(need.name for need in needs)} and "
            f"{builders.generated_secret_name(channel.name)}{note}",
        )

        gen = spec.genesys.credentials
        genesys = found["genesys"]
        client = self._integrations(
            spec, genesys[gen.client_id_key], genesys[gen.client_secret_key]
        )
        integration_id = await self._integration(
            channel, spec, turn, client, own, conds, status, emit
        )
        status["integrationId"] = integration_id
        conds.set(
            "CredentialsReady",
            TRUE,
            "CredentialsVerified",
            f"Genesys issued a token; {', '.join(need.name for need in needs)} and "
            f"{builders.generated_secret_name(channel.name)} found{note}",
        )

        checksum = builders.config_checksum(channel.spec, {**found, "own": own})
        for manifest in plan.owned_objects(
            channel,
            spec,
            integration_id=integration_id,
            checksum=checksum,
            image=self._settings.relay_image,
            ingress=self._settings.ingress,
            pods=self._settings.relay_pod,
        ):
            outcome = await self._kube.apply_reporting(manifest)
            event = _applied_event(manifest, outcome)
            if event is not None:
                emit(event)
        for api_version, kind, name in plan.retired_objects(channel, spec):
            if await self._kube.delete(api_version, kind, channel.namespace, name):
                emit(normal("Deleted", f"{kind} {name} deleted: no longer needed"))

        if spec.instagram.subscribe_webhooks:
            access_token = found["meta"][spec.instagram.credentials.access_token_key]
            try:
                subscription = await self._subscribe(spec, access_token)
            except Exception as exc:  # Meta down must not block the rest of the channel
                conds.set(
                    "WebhookSubscribed", UNKNOWN, "MetaUnavailable", f"could not check: {exc}"
                )
            else:
                # Which edge and fields Meta holds, or why it refused them.
                conds.set("WebhookSubscribed", *subscription.condition())

    async def _meta_token(
        self,
        channel: Channel,
        spec: ChannelSpec,
        need: plan.SecretNeed,
        data: dict[str, str],
        meta: dict[str, Any],
        conds: Conditions,
        status: dict[str, Any],
        emit: Emit,
    ) -> dict[str, str]:
        """Pre-flight of the Meta token, and its refresh with Instagram Login. Returns the
        Secret's data as the relay should get it (with a refreshed token)."""
        if self._tokens is None:
            return data
        ig = spec.instagram
        key = ig.credentials.access_token_key
        token, login = data[key], ig.login
        now, clock = time.time(), time.monotonic()
        notes = dict(meta.get("annotations") or {})
        expires_at = (
            parse_iso(notes.get(TOKEN_EXPIRES_ANNOTATION))
            if notes.get(TOKEN_DIGEST_ANNOTATION) == _digest(token)
            else None
        )
        margin = self._settings.token_refresh_margin_seconds
        refresh_error = ""
        if login == "instagram" and refresh_due(expires_at, now, margin):
            tried = self._refresh_failed.get(channel.uid)
            if tried is None or tried[0] != _digest(token) or clock >= tried[1]:
                result = await self._tokens.refresh(ig.graph_url, token, now)
                if isinstance(result, Refreshed):
                    await self._write_token(channel, need, key, result)
                    token, expires_at = result.access_token, float(result.expires_at)
                    data = {**data, key: token}
                    self._refresh_failed.pop(channel.uid, None)
                    emit(
                        normal(
                            "TokenRefreshed",
                            f"Instagram token in Secret {need.name} refreshed; it now "
                            f"expires at {iso(expires_at)} (the relay rolls to use it)",
                        )
                    )
                else:
                    retry_at = clock + self._settings.credentials_check_seconds
                    self._refresh_failed[channel.uid] = (_digest(token), retry_at)
                    refresh_error = result.message
                    log.warning(
                        "instagram token refresh failed",
                        extra={"channel": channel.name, "code": result.code},
                    )
                    if tried is None or tried[0] != _digest(token):
                        emit(
                            warning(
                                "TokenRefreshFailed", f"Meta would not refresh: {result.message}"
                            )
                        )

        verdict = await self._verdict(channel, spec, data, token, login)
        if verdict.expires_at is not None and expires_at is None:
            expires_at = verdict.expires_at
        if expires_at is not None:
            status["instagram"] = {"tokenExpiresAt": iso(expires_at)}
        metrics.token_expires(channel.namespace, channel.name, expires_at)
        self._token_condition(
            conds, login, expires_at, now, margin, refresh_error, verdict.debugged
        )
        if verdict.problem is not None:
            raise verdict.problem
        return data

    def _token_condition(
        self,
        conds: Conditions,
        login: Login,
        expires_at: float | None,
        now: float,
        margin: float,
        refresh_error: str,
        debugged: bool,
    ) -> None:
        """``TokenFresh``: a warning ahead of expiry, not part of Ready (the token still
        works until then)."""
        if expires_at is None:
            if login == "instagram":
                conds.set(
                    "TokenFresh",
                    UNKNOWN,
                    "ExpiryUnknown",
                    f"Meta has not refreshed the token yet: {refresh_error or 'not tried'}",
                )
            elif debugged:
                conds.set("TokenFresh", TRUE, "DoesNotExpire", "Meta sets no expiry on it")
            else:
                conds.set(
                    "TokenFresh",
                    UNKNOWN,
                    "ExpiryUnknown",
                    f"add an {APP_ID_KEY!r} key to the Meta Secret so Meta's debug_token "
                    "can tell the token's expiry and permissions",
                )
        elif expiring(expires_at, now, margin):
            why = refresh_error or "Facebook Login tokens cannot be refreshed"
            conds.set(
                "TokenFresh",
                FALSE,
                "TokenExpiring",
                f"the access token expires at {iso(expires_at)}: {why}; put a new token in "
                "the Secret",
            )
        else:
            conds.set("TokenFresh", TRUE, "NotExpiring", f"expires at {iso(expires_at)}")

    async def _verdict(
        self, channel: Channel, spec: ChannelSpec, data: dict[str, str], token: str, login: Login
    ) -> _Verdict:
        """Whose token, and (Facebook Login, when the Secret has an app id) may it message;
        asked of Meta once per token and check interval, not on every resync."""
        assert self._tokens is not None
        ig = spec.instagram
        app_id = data.get(APP_ID_KEY, "")
        extra = ig.entry_ids
        key = (_digest(token), ig.account_id, *extra, login, ig.graph_url, ig.api_version, app_id)
        cached = self._verdicts.get(channel.uid)
        if cached is not None and cached.key == key and time.monotonic() < cached.until:
            return cached
        found = await self._tokens.me(ig.graph_url, ig.api_version, token, login)
        problem = judge_identity(found, ig.account_id, extra)
        note, expires_at, debugged = "", None, False
        if isinstance(found, GraphFailure) and problem is None:
            # Meta down is no verdict on the token: keep the last one, ask again soon.
            note = f"; Meta could not be asked about the token: {found.message}"
            if cached is not None and cached.key == key:
                return cached
            return _Verdict(key, 0.0, None, note, None)
        if problem is None and login == "facebook" and app_id:
            app_token = f"{app_id}|{data[ig.credentials.app_secret_key]}"
            info = await self._tokens.debug(ig.graph_url, ig.api_version, token, app_token)
            problem = judge_token_info(info)
            if isinstance(info, GraphFailure):
                note = f"; debug_token failed ({info.message}): is {APP_ID_KEY!r} this app's id?"
            else:
                expires_at = float(info.expires_at) if info.expires_at else None
                debugged = True
        elif problem is None and login == "facebook":
            note = f"; permissions not checked (no {APP_ID_KEY!r} in the Secret)"
        verdict = _Verdict(
            key,
            time.monotonic() + self._settings.credentials_check_seconds,
            problem,
            note,
            expires_at,
            debugged,
        )
        self._verdicts[channel.uid] = verdict
        return verdict

    async def _write_token(
        self, channel: Channel, need: plan.SecretNeed, key: str, refreshed: Refreshed
    ) -> None:
        """The refreshed token into the user's Secret, with its expiry beside it."""
        encoded = base64.b64encode(refreshed.access_token.encode()).decode()
        patch = {
            "metadata": {
                "annotations": {
                    TOKEN_EXPIRES_ANNOTATION: iso(refreshed.expires_at),
                    TOKEN_DIGEST_ANNOTATION: _digest(refreshed.access_token),
                }
            },
            "data": {key: encoded},
        }
        await self._kube.patch("v1", "Secret", channel.namespace, need.name, patch)
        log.info("instagram token refreshed", extra={"channel": channel.name})

    async def _generated_secret(self, channel: Channel, emit: Emit = no_events) -> dict[str, str]:
        name = builders.generated_secret_name(channel.name)
        current = _decode(await self._kube.get("v1", "Secret", channel.namespace, name))
        verify = current.get(builders.VERIFY_TOKEN_KEY) or secrets.token_urlsafe(24)
        signing = current.get(builders.WEBHOOK_SECRET_KEY) or secrets.token_urlsafe(32)
        if (
            current.get(builders.VERIFY_TOKEN_KEY) != verify
            or current.get(builders.WEBHOOK_SECRET_KEY) != signing
        ):
            await self._kube.apply(
                builders.build_generated_secret(
                    channel.name, channel.namespace, channel.uid, verify, signing
                )
            )
            emit(
                normal(
                    "SecretCreated",
                    f"Secret {builders.generated_secret_name(channel.name)}: webhook verify "
                    "token and signing secret generated",
                )
            )
        return {builders.VERIFY_TOKEN_KEY: verify, builders.WEBHOOK_SECRET_KEY: signing}

    async def _integration(
        self,
        channel: Channel,
        spec: ChannelSpec,
        turn: _Turn,
        client: Integrations,
        own: dict[str, str],
        conds: Conditions,
        status: dict[str, Any],
        emit: Emit = no_events,
    ) -> str:
        desired = plan.desired_integration(channel, spec, own[builders.WEBHOOK_SECRET_KEY])
        sent_secret = channel.status.get(SECRET_DIGEST_STATUS)
        try:
            current = await self._find_integration(channel, desired.name, client)
            if current is None:
                await self._still_wanted(channel, turn)
                # Record the intent first: if we crash after Genesys created it but before we
                # saved its id, the next run adopts it by name instead of leaking a duplicate.
                await self._status(channel, {"pendingIntegration": desired.name})
                if turn.deleting:  # marked while the status patch was on its way
                    raise Deleting
                current = await client.create(
                    desired.name,
                    desired.webhook_url,
                    desired.signing_secret,
                    supported_content_id=desired.supported_content_id,
                    messaging_setting_id=desired.messaging_setting_id,
                )
                await self._status(
                    channel, {"integrationId": current["id"], "pendingIntegration": None}
                )
                log.info("genesys integration created", extra={"integration": current["id"]})
                emit(normal("IntegrationCreated", f"Open Messaging integration {current['id']}"))
                sent_secret = secret_digest(desired.signing_secret)
            integration_id = str(current["id"])
            settled = await client.wait_created(integration_id, within=5.0)
            # The whole desired state against Genesys's, the flow on the recipient included
            # (one more GET, only when the spec names a flow).
            recipient = ref_id(settled.get("recipient"))
            on_recipient = (
                await client.recipient_flow(recipient)
                if desired.inbound_flow_id and recipient
                else None
            )
            repair = integration_repair(desired, settled, on_recipient, sent_secret)
            if repair.patch:
                name = settled.get("name")
                await client.update(
                    integration_id, repair.patch, name=name if isinstance(name, str) else None
                )
                fields = ", ".join(sorted(repair.patch))
                emit(normal("IntegrationRepaired", f"integration {integration_id}: {fields}"))
            if repair.flow:
                await client.attach_flow(*repair.flow)
                emit(normal("FlowAttached", f"inbound flow {repair.flow[1]} on {integration_id}"))
            status["flowId"] = desired.inbound_flow_id
            status[SECRET_DIGEST_STATUS] = secret_digest(desired.signing_secret)
        except CreateStillPending as exc:
            conds.set("IntegrationReady", FALSE, "Creating", str(exc))
            raise RetryLater(str(exc), 2.0) from None
        except AuthError as exc:
            # Not True any more (it cannot be checked); the reason is the credentials'.
            conds.set("IntegrationReady", FALSE, "CredentialsRefused", str(exc))
            raise credentials_refused(
                f"Genesys refused the OAuth client in Secret {spec.genesys.credentials.name}"
                f" ({exc}): put the current client id and secret there"
            ) from None
        except TransientError as exc:
            conds.set("IntegrationReady", UNKNOWN, "GenesysUnavailable", str(exc))
            raise RetryLater(f"Genesys unavailable: {exc}", exc.retry_after or 10.0) from None
        except PermanentError as exc:
            conds.set("IntegrationReady", FALSE, "GenesysRejected", str(exc))
            raise invalid_spec(f"Genesys rejected the integration: {exc}") from None
        conds.set(
            "IntegrationReady", TRUE, "Completed", f"Open Messaging integration {integration_id}"
        )
        return integration_id

    async def _still_wanted(self, channel: Channel, turn: _Turn) -> None:
        """Raise Deleting when the channel's deletion has begun: marked by finalize in this
        process, or (another process, or a delete event kopf has not delivered yet) as the
        apiserver has the channel now. Read fresh: the body kopf handed over is older than
        the slow calls this reconcile may have waited on."""
        if turn.deleting:
            raise Deleting
        fresh = await self._kube.get(API_VERSION, KIND, channel.namespace, channel.name)
        meta = (fresh or {}).get("metadata") or {}
        if (
            turn.deleting
            or fresh is None
            or meta.get("deletionTimestamp")
            or meta.get("uid", channel.uid) != channel.uid
        ):
            raise Deleting

    async def _find_integration(
        self, channel: Channel, name: str, client: Integrations
    ) -> dict[str, Any] | None:
        for candidate in (
            channel.annotations.get(ADOPT_ANNOTATION),
            channel.status.get("integrationId"),
        ):
            if candidate:
                found = await client.get(candidate)
                if found is not None:
                    return found
        return await client.find_by_name(name)

    async def finalize(self, channel: Channel, emit: Emit = no_events) -> None:
        """On delete: remove the Genesys integration (or keep it under Orphan) once any
        reconcile in flight has had its turn (see the module's docstring). What stops it
        goes into the conditions too: a channel stuck in deletion says why."""
        metrics.forget(channel.namespace, channel.name)
        self._verdicts.pop(channel.uid, None)
        self._refresh_failed.pop(channel.uid, None)
        turn = self._turns.setdefault(channel.uid, _Turn())
        turn.deleting = True
        async with turn.lock:
            # After a reconcile's turn the status may name an integration created since
            # kopf read the body.
            fresh = await self._kube.get(API_VERSION, KIND, channel.namespace, channel.name)
            if fresh is not None and (fresh.get("metadata") or {}).get("uid") == channel.uid:
                channel = replace(channel, status=dict(fresh.get("status") or {}))
            try:
                await self._delete_integration(channel, emit)
            except SpecProblem as problem:
                conds = Conditions(channel.status.get("conditions"), channel.generation)
                _record(conds, problem)
                await self._finish(channel, conds, {}, emit)
                raise
        self._turns.pop(channel.uid, None)

    async def _delete_integration(self, channel: Channel, emit: Emit) -> None:
        try:
            spec = parse_spec(channel.spec)
        except SpecProblem:
            return  # never provisioned anything
        integration_id = channel.status.get("integrationId")
        if spec.deletion_policy == "Orphan" or not integration_id:
            log.info(
                "integration kept",
                extra={"integration": integration_id, "policy": spec.deletion_policy},
            )
            return
        (need,) = [n for n in plan.secrets_needed(spec) if n.role == "genesys"]
        try:
            data = await self._secret(channel, need)
        except SpecProblem as problem:
            raise SpecProblem(
                problem.condition,
                problem.reason,
                f"cannot delete integration {integration_id}: {problem.message}",
            ) from None
        gen = spec.genesys.credentials
        client = self._integrations(spec, data[gen.client_id_key], data[gen.client_secret_key])
        try:
            await client.delete(str(integration_id))
        except TransientError as exc:
            raise RetryLater(
                f"Genesys unavailable while deleting: {exc}", exc.retry_after or 10.0
            ) from None
        except AuthError as exc:
            raise credentials_refused(
                f"cannot delete integration {integration_id}: Genesys refused the OAuth "
                f"client in Secret {gen.name} ({exc}): put the current client id and secret "
                "there"
            ) from None
        except GenesysError as exc:
            raise SpecProblem(
                "IntegrationReady",
                "GenesysRejected",
                f"Genesys refused to delete integration {integration_id}: {exc}",
            ) from None
        log.info("integration deleted", extra={"integration": integration_id})
        emit(normal("IntegrationDeleted", f"Open Messaging integration {integration_id}"))


def _who(channel: Channel) -> dict[str, str]:
    return {"channel": channel.name, "namespace": channel.namespace}


def _applied_event(manifest: builders.Manifest, outcome: str) -> Event | None:
    """Created objects, and a relay Deployment whose pods change (so it rolls); other
    repairs stay quiet unless something actually changed."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    if outcome == "created":
        return normal("Created", f"{kind} {name} created")
    if outcome == "updated" and kind == "Deployment":
        return normal("DeploymentApplied", f"Deployment {name} updated: the relay rolls")
    if outcome == "updated":
        return normal("Repaired", f"{kind} {name} brought back to the spec")
    return None
