"""Reconciling one InstagramChannel: credentials, the Genesys integration, the relay's
workload, Meta's webhook subscription, and a status that says what to fix.

The I/O lives here; what the channel should be is decided in plan.py. Handlers
(handlers.py) stay thin and call ``reconcile`` / ``finalize`` here.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from igbridge.relay.channel_status import API_VERSION, GROUP, KIND, RelayReport
from igbridge.relay.genesys.errors import AuthError, GenesysError, PermanentError, TransientError

from . import builders, plan
from .channel import Channel
from .conditions import FALSE, TRUE, UNKNOWN, Conditions
from .integrations import CreateStillPending, Integrations
from .kube import Kube
from .problems import RetryLater, SpecProblem, invalid_spec, secret_missing
from .relay_verdict import relay_available
from .settings import OperatorSettings
from .spec import ChannelSpec, parse_spec

log = logging.getLogger(__name__)

ADOPT_ANNOTATION = f"{GROUP}/integration-id"

IntegrationsFactory = Callable[[ChannelSpec, str, str], Integrations]
SubscriptionCheck = Callable[[ChannelSpec, str], Awaitable[bool]]


def _decode(secret: dict[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    out = {k: base64.b64decode(v).decode("utf-8") for k, v in data.items() if isinstance(v, str)}
    for key, value in ((secret or {}).get("stringData") or {}).items():
        out.setdefault(key, value)
    return out


def _record(conds: Conditions, problem: SpecProblem) -> None:
    conds.set(problem.condition, FALSE, problem.reason, problem.message)
    if problem.condition == "CredentialsReady":
        # Nothing can be synced without them.
        conds.set("Synced", FALSE, "WaitingForCredentials", problem.message)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        integrations: IntegrationsFactory,
        subscriptions: SubscriptionCheck,
        settings: OperatorSettings,
    ) -> None:
        self._kube = kube
        self._integrations = integrations
        self._subscribe = subscriptions
        self._settings = settings

    async def _status(self, channel: Channel, status: dict[str, Any]) -> None:
        await self._kube.patch_status(API_VERSION, KIND, channel.namespace, channel.name, status)

    async def _secret(self, channel: Channel, need: plan.SecretNeed) -> dict[str, str]:
        found = await self._kube.get("v1", "Secret", channel.namespace, need.name)
        if found is None:
            raise secret_missing(f"Secret {channel.namespace}/{need.name} not found")
        data = _decode(found)
        missing = [k for k in need.keys if not data.get(k)]
        if missing:
            raise secret_missing(
                f"Secret {channel.namespace}/{need.name} has no key {missing[0]!r}"
            )
        return data

    async def reconcile(self, channel: Channel) -> None:
        conds = Conditions(channel.status.get("conditions"), channel.generation)
        status: dict[str, Any] = {"observedGeneration": channel.generation}
        try:
            spec = parse_spec(channel.spec)
            status["webhookUrls"] = {
                "instagram": spec.instagram_webhook_url,
                "genesys": spec.genesys_webhook_url,
            }
            await self._reconcile(channel, spec, conds, status)
        except SpecProblem as problem:
            _record(conds, problem)
            await self._status(channel, {**status, "conditions": conds.finish()})
            raise
        except RetryLater as exc:
            conds.set("Synced", FALSE, "GenesysUnavailable", str(exc))
            await self._status(channel, {**status, "conditions": conds.finish()})
            raise
        conds.set("Synced", TRUE, "Reconciled", "every owned object matches the spec")
        self._relay_condition(channel, conds)
        await self._status(channel, {**status, "conditions": conds.finish()})

    async def refresh_relay(self, channel: Channel) -> bool:
        """Re-judge only ``RelayAvailable`` (and so ``Ready``) from what the relay pods
        reported, without touching Genesys or the workload: cheap enough to run on every
        report. Patches only when the verdict changed; True if it did."""
        conds = Conditions(channel.status.get("conditions"), channel.generation)
        old = conds.get("RelayAvailable") or {}
        self._relay_condition(channel, conds)
        new = conds.get("RelayAvailable") or {}
        if (old.get("status"), old.get("reason")) == (new.get("status"), new.get("reason")):
            return False
        await self._status(channel, {"conditions": conds.finish()})
        return True

    def _relay_condition(self, channel: Channel, conds: Conditions) -> None:
        verdict = relay_available(
            RelayReport.read(channel.status.get("relay")),
            now=time.time(),
            grace=self._settings.relay_grace_seconds,
        )
        conds.set("RelayAvailable", verdict.status, verdict.reason, verdict.message)

    async def _reconcile(
        self, channel: Channel, spec: ChannelSpec, conds: Conditions, status: dict[str, Any]
    ) -> None:
        needs = plan.secrets_needed(spec)
        found = {need.role: await self._secret(channel, need) for need in needs}
        own = await self._generated_secret(channel)
        conds.set(
            "CredentialsReady",
            TRUE,
            "SecretsFound",
            f"{', '.join(need.name for need in needs)} and "
            f"{builders.generated_secret_name(channel.name)}",
        )

        gen = spec.genesys.credentials
        genesys = found["genesys"]
        client = self._integrations(
            spec, genesys[gen.client_id_key], genesys[gen.client_secret_key]
        )
        integration_id = await self._integration(channel, spec, client, own, conds, status)
        status["integrationId"] = integration_id

        checksum = builders.config_checksum(channel.spec, {**found, "own": own})
        for manifest in plan.owned_objects(
            channel,
            spec,
            integration_id=integration_id,
            checksum=checksum,
            image=self._settings.relay_image,
            ingress=self._settings.ingress,
        ):
            await self._kube.apply(manifest)

        if spec.instagram.subscribe_webhooks:
            access_token = found["meta"][spec.instagram.credentials.access_token_key]
            try:
                ok = await self._subscribe(spec, access_token)
            except Exception as exc:  # Meta down must not block the rest of the channel
                conds.set(
                    "WebhookSubscribed", UNKNOWN, "MetaUnavailable", f"could not check: {exc}"
                )
            else:
                if ok:
                    conds.set(
                        "WebhookSubscribed", TRUE, "Subscribed", "the account receives webhooks"
                    )
                else:
                    conds.set(
                        "WebhookSubscribed",
                        FALSE,
                        "SubscribeFailed",
                        "Meta refused the subscription",
                    )

    async def _generated_secret(self, channel: Channel) -> dict[str, str]:
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
        return {builders.VERIFY_TOKEN_KEY: verify, builders.WEBHOOK_SECRET_KEY: signing}

    async def _integration(
        self,
        channel: Channel,
        spec: ChannelSpec,
        client: Integrations,
        own: dict[str, str],
        conds: Conditions,
        status: dict[str, Any],
    ) -> str:
        desired = plan.desired_integration(channel, spec, own[builders.WEBHOOK_SECRET_KEY])
        try:
            current = await self._find_integration(channel, desired.name, client)
            if current is None:
                # Record the intent first: if we crash after Genesys created it but before we
                # saved its id, the next run adopts it by name instead of leaking a duplicate.
                await self._status(channel, {"pendingIntegration": desired.name})
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
            integration_id = str(current["id"])
            settled = await client.wait_created(integration_id, within=5.0)
            drift = plan.integration_drift(desired, settled)
            if drift:
                await client.update(integration_id, drift)
            attach = plan.flow_to_attach(desired, settled, channel.status.get("flowId"))
            if attach:
                await client.attach_flow(*attach)
            status["flowId"] = desired.inbound_flow_id
        except CreateStillPending as exc:
            conds.set("IntegrationReady", FALSE, "Creating", str(exc))
            raise RetryLater(str(exc), 2.0) from None
        except AuthError as exc:
            conds.set("IntegrationReady", FALSE, "GenesysAuthFailed", str(exc))
            raise secret_missing(
                f"Genesys credentials in Secret {spec.genesys.credentials.name} were refused: {exc}"
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

    async def finalize(self, channel: Channel) -> None:
        """On delete: remove the Genesys integration (or keep it under Orphan)."""
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
        gen = spec.genesys.credentials
        secret = await self._kube.get("v1", "Secret", channel.namespace, gen.name)
        data = _decode(secret)
        if not data.get(gen.client_id_key) or not data.get(gen.client_secret_key):
            raise secret_missing(
                f"cannot delete integration {integration_id}: Secret {gen.name} is gone"
            )
        client = self._integrations(spec, data[gen.client_id_key], data[gen.client_secret_key])
        try:
            await client.delete(str(integration_id))
        except TransientError as exc:
            raise RetryLater(
                f"Genesys unavailable while deleting: {exc}", exc.retry_after or 10.0
            ) from None
        except GenesysError as exc:
            raise SpecProblem(
                "IntegrationReady",
                "GenesysRejected",
                f"Genesys refused to delete integration {integration_id}: {exc}",
            ) from None
        log.info("integration deleted", extra={"integration": integration_id})
