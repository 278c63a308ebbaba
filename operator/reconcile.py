"""Reconciling one InstagramChannel: credentials, the Genesys integration, the relay's
workload, Meta's webhook subscription, and a status that says what to fix.

Handlers (handlers.py) stay thin and call ``reconcile`` / ``finalize`` here.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from igbridge.relay.genesys.errors import AuthError, GenesysError, PermanentError, TransientError

from . import builders
from .conditions import FALSE, TRUE, UNKNOWN, Conditions
from .integrations import CreateStillPending, Integrations
from .kube import Kube
from .spec import ChannelSpec

log = logging.getLogger(__name__)

API_VERSION = builders.API_VERSION
ADOPT_ANNOTATION = "igbridge.dev/integration-id"


class RetryLater(Exception):
    """Something outside our control is not ready; try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class SpecProblem(Exception):
    """The spec (or a referenced Secret) must change before retrying can help."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: dict[str, Any]
    status: dict[str, Any]
    annotations: dict[str, str]


IntegrationsFactory = Callable[[ChannelSpec, str, str], Integrations]
SubscriptionCheck = Callable[[ChannelSpec, str], Awaitable[bool]]


@dataclass
class OperatorConfig:
    relay_image: str = "ghcr.io/igbridge/igbridge:latest"
    relay_grace_seconds: float = 90.0
    ingress: builders.IngressOptions | None = None


def _decode(secret: dict[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    out = {k: base64.b64decode(v).decode("utf-8") for k, v in data.items() if isinstance(v, str)}
    for key, value in ((secret or {}).get("stringData") or {}).items():
        out.setdefault(key, value)
    return out


def integration_name(channel: Channel, spec: ChannelSpec) -> str:
    return spec.genesys.integration_name or f"igbridge-{channel.namespace}-{channel.name}"[:100]


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        integrations: IntegrationsFactory,
        subscriptions: SubscriptionCheck,
        config: OperatorConfig,
    ) -> None:
        self._kube = kube
        self._integrations = integrations
        self._subscribe = subscriptions
        self._config = config

    async def _status(self, channel: Channel, status: dict[str, Any]) -> None:
        await self._kube.patch_status(
            API_VERSION, builders.KIND, channel.namespace, channel.name, status
        )

    async def _secret(
        self, channel: Channel, name: str, keys: list[str], conds: Conditions
    ) -> dict[str, str]:
        found = await self._kube.get("v1", "Secret", channel.namespace, name)
        if found is None:
            raise SpecProblem(f"Secret {channel.namespace}/{name} not found")
        data = _decode(found)
        missing = [k for k in keys if not data.get(k)]
        if missing:
            raise SpecProblem(f"Secret {channel.namespace}/{name} has no key {missing[0]!r}")
        return data

    async def reconcile(self, channel: Channel) -> None:
        conds = Conditions(channel.status.get("conditions"), channel.generation)
        status: dict[str, Any] = {"observedGeneration": channel.generation}
        try:
            spec = ChannelSpec.model_validate(channel.spec)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            conds.set("Synced", FALSE, "InvalidSpec", f"spec.{where}: {err['msg']}")
            await self._status(channel, {**status, "conditions": conds.finish()})
            raise SpecProblem(f"spec.{where}: {err['msg']}") from None
        status["webhookUrls"] = {
            "instagram": spec.instagram_webhook_url,
            "genesys": spec.genesys_webhook_url,
        }
        try:
            await self._reconcile(channel, spec, conds, status)
        except SpecProblem as exc:
            kind = "CredentialsReady" if "Secret" in str(exc) else "Synced"
            conds.set(
                kind,
                FALSE,
                "SecretMissing" if kind == "CredentialsReady" else "InvalidSpec",
                str(exc),
            )
            if kind == "CredentialsReady":
                conds.set("Synced", FALSE, "WaitingForCredentials", str(exc))
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
        relay = channel.status.get("relay") or {}
        beat = relay.get("lastHeartbeat")
        if not beat:
            conds.set(
                "RelayAvailable", UNKNOWN, "WaitingForRelay", "the relay has not reported yet"
            )
            return
        try:
            age = (
                datetime.now(tz=UTC) - datetime.fromisoformat(beat.replace("Z", "+00:00"))
            ).total_seconds()
        except ValueError:
            age = float("inf")
        if age > self._config.relay_grace_seconds:
            conds.set(
                "RelayAvailable",
                FALSE,
                "RelayNotReporting",
                f"no report from the relay for {age:.0f}s "
                f"(grace {self._config.relay_grace_seconds:.0f}s); check the relay pods",
            )
        elif relay.get("ready") is False:
            conds.set(
                "RelayAvailable",
                FALSE,
                "RelayNotReady",
                str(relay.get("lastError") or "the relay is not ready"),
            )
        else:
            conds.set("RelayAvailable", TRUE, "RelayReporting", f"last report {age:.0f}s ago")

    async def _reconcile(
        self, channel: Channel, spec: ChannelSpec, conds: Conditions, status: dict[str, Any]
    ) -> None:
        ig, gen = spec.instagram.credentials, spec.genesys.credentials
        meta = await self._secret(channel, ig.name, [ig.app_secret_key, ig.access_token_key], conds)
        genesys = await self._secret(
            channel, gen.name, [gen.client_id_key, gen.client_secret_key], conds
        )
        redis = spec.relay.store.redis
        # Read, not just mounted: a missing Secret is named here rather than as a pod that
        # cannot start, and a rotated Redis password rolls the relay like other secrets.
        store = await self._secret(channel, redis.name, [redis.url_key], conds) if redis else {}
        own = await self._generated_secret(channel)
        names = [ig.name, gen.name] + ([redis.name] if redis else [])
        conds.set(
            "CredentialsReady",
            TRUE,
            "SecretsFound",
            f"{', '.join(names)} and {builders.generated_secret_name(channel.name)}",
        )

        client = self._integrations(
            spec, genesys[gen.client_id_key], genesys[gen.client_secret_key]
        )
        integration_id = await self._integration(channel, spec, client, own, conds, status)
        status["integrationId"] = integration_id

        secrets = {"meta": meta, "genesys": genesys, "own": own}
        if store:  # only then: an operator upgrade must not roll every SQLite relay
            secrets["store"] = store
        checksum = builders.config_checksum(channel.spec, secrets)
        await self._workload(channel, spec, integration_id, checksum)

        if spec.instagram.subscribe_webhooks:
            try:
                ok = await self._subscribe(spec, meta[ig.access_token_key])
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
        name = integration_name(channel, spec)
        signing = own[builders.WEBHOOK_SECRET_KEY]
        try:
            current = await self._find_integration(channel, name, client)
            if current is None:
                # Record the intent first: if we crash after Genesys created it but before we
                # saved its id, the next run adopts it by name instead of leaking a duplicate.
                await self._status(channel, {"pendingIntegration": name})
                current = await client.create(
                    name,
                    spec.genesys_webhook_url,
                    signing,
                    supported_content_id=spec.genesys.supported_content_id,
                    messaging_setting_id=spec.genesys.messaging_setting_id,
                )
                await self._status(
                    channel, {"integrationId": current["id"], "pendingIntegration": None}
                )
                log.info("genesys integration created", extra={"integration": current["id"]})
            integration_id = str(current["id"])
            settled = await client.wait_created(integration_id, within=5.0)
            drift: dict[str, Any] = {}
            if settled.get("outboundNotificationWebhookUrl") != spec.genesys_webhook_url:
                drift["outboundNotificationWebhookUrl"] = spec.genesys_webhook_url
            # An adopted integration keeps its name unless the spec names one explicitly.
            if spec.genesys.integration_name and settled.get("name") != name:
                drift["name"] = name
            if drift or settled.get("outboundNotificationWebhookSignatureSecretToken") not in (
                None,
                signing,
            ):
                drift["outboundNotificationWebhookSignatureSecretToken"] = signing
                await client.update(integration_id, drift)
            flow = spec.genesys.inbound_flow_id
            recipient = (settled.get("recipient") or {}).get("id")
            if flow and recipient and channel.status.get("flowId") != flow:
                await client.attach_flow(recipient, flow)
            status["flowId"] = flow
        except CreateStillPending as exc:
            conds.set("IntegrationReady", FALSE, "Creating", str(exc))
            raise RetryLater(str(exc), 2.0) from None
        except AuthError as exc:
            conds.set("IntegrationReady", FALSE, "GenesysAuthFailed", str(exc))
            raise SpecProblem(
                f"Genesys credentials in Secret {spec.genesys.credentials.name} were refused: {exc}"
            ) from None
        except TransientError as exc:
            conds.set("IntegrationReady", UNKNOWN, "GenesysUnavailable", str(exc))
            raise RetryLater(f"Genesys unavailable: {exc}", exc.retry_after or 10.0) from None
        except PermanentError as exc:
            conds.set("IntegrationReady", FALSE, "GenesysRejected", str(exc))
            raise SpecProblem(f"Genesys rejected the integration: {exc}") from None
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

    async def _workload(
        self, channel: Channel, spec: ChannelSpec, integration_id: str, checksum: str
    ) -> None:
        n, ns, uid = channel.name, channel.namespace, channel.uid
        manifests = [
            builders.build_service_account(n, ns, uid),
            builders.build_role(n, ns, uid),
            builders.build_role_binding(n, ns, uid),
            builders.build_service(n, ns, uid),
        ]
        if spec.relay.store.redis is None:
            manifests.append(builders.build_data_claim(n, ns, uid))
        manifests.append(
            builders.build_deployment(
                n,
                ns,
                uid,
                spec,
                integration_id=integration_id,
                image=self._config.relay_image,
                checksum=checksum,
            )
        )
        if self._config.ingress is not None:
            manifests.append(builders.build_ingress(n, ns, uid, spec, self._config.ingress))
        for manifest in manifests:
            await self._kube.apply(manifest)

    async def finalize(self, channel: Channel) -> None:
        """On delete: remove the Genesys integration (or keep it under Orphan)."""
        try:
            spec = ChannelSpec.model_validate(channel.spec)
        except ValidationError:
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
            raise SpecProblem(
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
                f"Genesys refused to delete integration {integration_id}: {exc}"
            ) from None
        log.info("integration deleted", extra={"integration": integration_id})
