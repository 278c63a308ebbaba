"""What a channel should be, decided from data alone: the Secrets it needs, its Genesys
integration and what to repair on one that drifted, and the objects it owns.

reconcile.py reads and writes around these; nothing here does I/O, so each decision can
be tested (and read) as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import builders
from .channel import Channel
from .spec import ChannelSpec

WEBHOOK_URL = "outboundNotificationWebhookUrl"
SIGNING_SECRET = "outboundNotificationWebhookSignatureSecretToken"  # noqa: S105 (a field name)


@dataclass(frozen=True, slots=True)
class SecretNeed:
    """A Secret the spec references and the keys that must be in it. ``role`` names its
    data in the config checksum."""

    role: str
    name: str
    keys: tuple[str, ...]


def secrets_needed(spec: ChannelSpec) -> tuple[SecretNeed, ...]:
    """In the order they are checked (and named in ``CredentialsReady``)."""
    ig, gen = spec.instagram.credentials, spec.genesys.credentials
    needs = [
        SecretNeed("meta", ig.name, (ig.app_secret_key, ig.access_token_key)),
        SecretNeed("genesys", gen.name, (gen.client_id_key, gen.client_secret_key)),
    ]
    redis = spec.relay.store.redis
    # Read, not just mounted: a missing Secret is named rather than left to a pod that
    # cannot start, and a rotated Redis password rolls the relay like other secrets. Only
    # with Redis: an operator upgrade must not roll every SQLite relay.
    if redis:
        needs.append(SecretNeed("store", redis.name, (redis.url_key,)))
    return tuple(needs)


def integration_name(channel: Channel, spec: ChannelSpec) -> str:
    return spec.genesys.integration_name or f"igbridge-{channel.namespace}-{channel.name}"[:100]


@dataclass(frozen=True, slots=True)
class DesiredIntegration:
    name: str
    webhook_url: str
    signing_secret: str
    supported_content_id: str | None = None
    messaging_setting_id: str | None = None
    inbound_flow_id: str | None = None
    # An adopted integration keeps its own name unless the spec names one explicitly.
    enforce_name: bool = False


def desired_integration(
    channel: Channel, spec: ChannelSpec, signing_secret: str
) -> DesiredIntegration:
    gen = spec.genesys
    return DesiredIntegration(
        name=integration_name(channel, spec),
        webhook_url=spec.genesys_webhook_url,
        signing_secret=signing_secret,
        supported_content_id=gen.supported_content_id,
        messaging_setting_id=gen.messaging_setting_id,
        inbound_flow_id=gen.inbound_flow_id,
        enforce_name=bool(gen.integration_name),
    )


def owned_objects(
    channel: Channel,
    spec: ChannelSpec,
    *,
    integration_id: str,
    checksum: str,
    image: str,
    ingress: builders.IngressOptions | None,
    pods: builders.PodOptions | None = None,
) -> list[builders.Manifest]:
    """The relay's workload, in the order it is applied (the Deployment after what its
    pods need)."""
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
            image=image,
            checksum=checksum,
            pods=pods,
        )
    )
    if spec.relay.replicas > 1:
        manifests.append(builders.build_disruption_budget(n, ns, uid))
    if ingress is not None:
        manifests.append(builders.build_ingress(n, ns, uid, spec, ingress))
    return manifests


def retired_objects(channel: Channel, spec: ChannelSpec) -> list[tuple[str, str, str]]:
    """``(apiVersion, kind, name)`` of owned objects the spec no longer wants: the
    disruption budget once the relay is down to one replica (it would block drains)."""
    if spec.relay.replicas > 1:
        return []
    return [("policy/v1", "PodDisruptionBudget", builders.relay_name(channel.name))]
