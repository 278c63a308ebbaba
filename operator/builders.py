"""Pure builders: an InstagramChannel in, the manifests it owns out.

No I/O here. The kopf handlers call these and apply the results, so what the operator
creates can be tested (and read) as plain data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from igbridge.relay.channel_status import API_VERSION, GROUP, KIND, PLURAL

from .spec import ChannelSpec

RELAY_PORT = 8080
# /healthz, /readyz, /metrics: the probes and the scrape, never routed from the internet.
ADMIN_PORT = 9090
# Paths and key names, not secrets.
SECRET_MOUNT = "/var/run/igbridge"  # noqa: S105
DATA_DIR = "/data"
CHANNEL_LABEL = f"{GROUP}/channel"
CHECKSUM_ANNOTATION = f"{GROUP}/config-checksum"
VERIFY_TOKEN_KEY = "verify-token"  # noqa: S105
WEBHOOK_SECRET_KEY = "genesys-webhook-secret"  # noqa: S105

Manifest = dict[str, Any]


def relay_name(channel: str) -> str:
    return f"{channel}-relay"


def generated_secret_name(channel: str) -> str:
    return f"{channel}-igbridge"


def data_claim_name(channel: str) -> str:
    return f"{channel}-relay-data"


def labels(channel: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "igbridge-relay",
        "app.kubernetes.io/instance": channel,
        "app.kubernetes.io/managed-by": "igbridge-operator",
        CHANNEL_LABEL: channel,
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(name: str, namespace: str, channel: str, uid: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(channel),
        "ownerReferences": [owner_reference(channel, uid)],
    }


def build_generated_secret(
    channel: str, namespace: str, uid: str, verify_token: str, webhook_secret: str
) -> Manifest:
    """The values igbridge generates: Meta's verify token, Genesys's signing secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(generated_secret_name(channel), namespace, channel, uid),
        "type": "Opaque",
        "stringData": {VERIFY_TOKEN_KEY: verify_token, WEBHOOK_SECRET_KEY: webhook_secret},
    }


def config_checksum(spec: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]) -> str:
    """Changes when the spec or any referenced Secret's data changes: the relay then rolls."""
    blob = json.dumps({"spec": spec, "secrets": secrets}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _env(spec: ChannelSpec, integration_id: str) -> list[dict[str, Any]]:
    ig, gen, relay = spec.instagram, spec.genesys, spec.relay
    meta_dir, gen_dir, own_dir = (
        f"{SECRET_MOUNT}/meta",
        f"{SECRET_MOUNT}/genesys",
        (f"{SECRET_MOUNT}/channel"),
    )
    store = (
        {
            "name": "IGBRIDGE_STORE_URL_FILE",
            "value": f"{SECRET_MOUNT}/store/{relay.store.redis.url_key}",
        }
        if relay.store.redis
        else {"name": "IGBRIDGE_STORE_URL", "value": f"sqlite:///{DATA_DIR}/igbridge.db"}
    )
    values = {
        "IGBRIDGE_META_GRAPH_URL": ig.graph_url,
        "IGBRIDGE_META_API_VERSION": ig.api_version,
        "IGBRIDGE_INSTAGRAM_ACCOUNT_ID": ig.account_id,
        "IGBRIDGE_INSTAGRAM_ENTRY_IDS": ",".join(ig.entry_ids),
        "IGBRIDGE_STANDBY": ig.standby,
        "IGBRIDGE_META_APP_SECRET_FILE": f"{meta_dir}/{ig.credentials.app_secret_key}",
        "IGBRIDGE_META_ACCESS_TOKEN_FILE": f"{meta_dir}/{ig.credentials.access_token_key}",
        "IGBRIDGE_META_VERIFY_TOKEN_FILE": f"{own_dir}/{VERIFY_TOKEN_KEY}",
        "IGBRIDGE_GENESYS_API_URL": gen.api_url,
        "IGBRIDGE_GENESYS_LOGIN_URL": gen.login_url,
        "IGBRIDGE_GENESYS_CLIENT_ID_FILE": f"{gen_dir}/{gen.credentials.client_id_key}",
        "IGBRIDGE_GENESYS_CLIENT_SECRET_FILE": f"{gen_dir}/{gen.credentials.client_secret_key}",
        "IGBRIDGE_GENESYS_INTEGRATION_ID": integration_id,
        "IGBRIDGE_GENESYS_WEBHOOK_SECRET_FILE": f"{own_dir}/{WEBHOOK_SECRET_KEY}",
        "IGBRIDGE_WINDOW_ESCALATE_AFTER": str(spec.window.escalate_after),
        "IGBRIDGE_WINDOW_PRIORITY": str(spec.window.priority),
        "IGBRIDGE_HUMAN_AGENT_TAG": str(spec.window.human_agent_tag).lower(),
        "IGBRIDGE_COMMENT_REPLIES": relay.comment_replies,
        "IGBRIDGE_LOG_LEVEL": relay.log_level,
        "IGBRIDGE_BASE_PATH": urlsplit(spec.base_url).path.rstrip("/"),
        "IGBRIDGE_GUARD": spec.guard_json,
        "IGBRIDGE_PUBLIC_URL": spec.base_url,
        **spec.retention.env(),
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env.append(store)
    env.append(
        {
            "name": "IGBRIDGE_CHANNEL_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{CHANNEL_LABEL}']"}},
        }
    )
    env.append(
        {
            "name": "IGBRIDGE_CHANNEL_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        }
    )
    env.append(
        {"name": "IGBRIDGE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    return env


def _volumes(channel: str, spec: ChannelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    secret_volumes = {
        "meta": spec.instagram.credentials.name,
        "genesys": spec.genesys.credentials.name,
        "channel": generated_secret_name(channel),
    }
    if spec.relay.store.redis:
        secret_volumes["store"] = spec.relay.store.redis.name
    volumes: list[dict[str, Any]] = [
        {"name": f"{key}-secret", "secret": {"secretName": name, "defaultMode": 0o440}}
        for key, name in secret_volumes.items()
    ]
    mounts: list[dict[str, Any]] = [
        {"name": f"{key}-secret", "mountPath": f"{SECRET_MOUNT}/{key}", "readOnly": True}
        for key in secret_volumes
    ]
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})  # noqa: S108 (a container's own /tmp)
    if not spec.relay.store.redis:
        volumes.append(
            {"name": "data", "persistentVolumeClaim": {"claimName": data_claim_name(channel)}}
        )
        mounts.append({"name": "data", "mountPath": DATA_DIR})
    return volumes, mounts


class PodOptions(BaseModel):
    """Where and how every relay pod runs: the cluster admin's choice (the chart's
    ``relayPods`` and ``imagePullSecrets``), the same for all channels. Not channel spec
    fields: nodes, taints, priority classes and pull secrets belong to whoever runs the
    cluster, and a channel author must not be able to pick a higher priority class."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    image_pull_secrets: tuple[str, ...] = Field(default=(), alias="imagePullSecrets")
    # The chart's image.pullPolicy; empty: Kubernetes's default for the tag.
    image_pull_policy: Literal["", "Always", "IfNotPresent", "Never"] = Field(
        default="", alias="imagePullPolicy"
    )
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = Field(default_factory=dict)
    topology_spread_constraints: tuple[dict[str, Any], ...] = Field(
        default=(), alias="topologySpreadConstraints"
    )
    priority_class_name: str = Field(default="", alias="priorityClassName")
    annotations: dict[str, str] = Field(default_factory=dict, alias="podAnnotations")
    labels: dict[str, str] = Field(default_factory=dict, alias="podLabels")

    def pod_spec(self, selector: dict[str, str]) -> dict[str, Any]:
        """The pod spec fields these set; unset ones stay out of the manifest (server-side
        apply then removes one taken out of the chart's values). A spread constraint
        without a labelSelector spreads this channel's pods (``selector``): the chart
        cannot name each channel's labels."""
        fields: dict[str, Any] = {
            "imagePullSecrets": [{"name": n} for n in self.image_pull_secrets],
            "nodeSelector": dict(self.node_selector),
            "tolerations": [dict(t) for t in self.tolerations],
            "affinity": dict(self.affinity),
            "topologySpreadConstraints": [
                {**c, "labelSelector": c.get("labelSelector") or {"matchLabels": selector}}
                for c in self.topology_spread_constraints
            ],
            "priorityClassName": self.priority_class_name,
        }
        return {k: v for k, v in fields.items() if v}


def _pod_selector(channel: str) -> dict[str, str]:
    return {CHANNEL_LABEL: channel, "app.kubernetes.io/name": "igbridge-relay"}


def build_deployment(
    channel: str,
    namespace: str,
    uid: str,
    spec: ChannelSpec,
    *,
    integration_id: str,
    image: str,
    checksum: str,
    pods: PodOptions | None = None,
) -> Manifest:
    pods = pods or PodOptions()
    volumes, mounts = _volumes(channel, spec)
    probe = {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10}
    container = {
        "name": "relay",
        "image": spec.relay.image or image,
        **({"imagePullPolicy": pods.image_pull_policy} if pods.image_pull_policy else {}),
        # The pod's own address space: the Service and the probes reach it from outside.
        "command": [
            "igbridge-relay",
            "serve",
            "--host",
            "0.0.0.0",  # noqa: S104
            "--port",
            str(RELAY_PORT),
            "--admin-port",
            str(ADMIN_PORT),
        ],
        "ports": [
            {"name": "http", "containerPort": RELAY_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "env": _env(spec, integration_id),
        "volumeMounts": mounts,
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "admin"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # Two processes (the web one and the delivery one it starts): ~70 MB each.
        "resources": spec.relay.resources
        or {"requests": {"cpu": "100m", "memory": "160Mi"}, "limits": {"memory": "320Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    # One SQLite file on a ReadWriteOnce volume: the old pod must stop before the new starts.
    # With Redis, rollingUpdate is set rather than left to the apiserver's default, so the
    # operator owns it and server-side apply removes it on a switch to Recreate.
    strategy: dict[str, Any] = (
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        if spec.relay.store.redis
        else {"type": "Recreate"}
    )
    pod_spec = pods.pod_spec(_pod_selector(channel))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
        "spec": {
            "replicas": spec.relay.replicas,
            "strategy": strategy,
            "selector": {"matchLabels": _pod_selector(channel)},
            "template": {
                "metadata": {
                    # The operator's own labels and checksum win over the chart's.
                    "labels": {**pods.labels, **labels(channel)},
                    "annotations": {**pods.annotations, CHECKSUM_ANNOTATION: checksum},
                },
                "spec": {
                    **pod_spec,
                    "serviceAccountName": relay_name(channel),
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def build_disruption_budget(channel: str, namespace: str, uid: str) -> Manifest:
    """For more than one replica: a node drain evicts relay pods one at a time, so one
    always answers Meta's webhooks. (A single replica gets none: minAvailable 1 would
    block every drain.)"""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _pod_selector(channel)}},
    }


def build_data_claim(channel: str, namespace: str, uid: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(data_claim_name(channel), namespace, channel, uid),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def build_service(channel: str, namespace: str, uid: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
        "spec": {
            "selector": _pod_selector(channel),
            # The Ingress routes to "http"; the chart's ServiceMonitor scrapes "admin".
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }


def build_service_account(channel: str, namespace: str, uid: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
    }


def build_role(channel: str, namespace: str, uid: str) -> Manifest:
    """The relay may read and patch its own channel's status, and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [channel],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": [GROUP],
                "resources": [PLURAL],
                "resourceNames": [channel],
                "verbs": ["get"],
            },
        ],
    }


def build_role_binding(channel: str, namespace: str, uid: str) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(relay_name(channel), namespace, channel, uid),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": relay_name(channel),
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": relay_name(channel), "namespace": namespace}
        ],
    }


@dataclass(frozen=True, slots=True)
class IngressOptions:
    """Optional, chart-enabled: an Ingress per channel for its publicUrl's host and path."""

    class_name: str
    annotations: dict[str, str]
    tls_secret_template: str = ""  # e.g. "{name}-tls"; empty: no TLS section


def build_ingress(
    channel: str, namespace: str, uid: str, spec: ChannelSpec, options: IngressOptions
) -> Manifest:
    url = urlsplit(spec.base_url)
    path = url.path.rstrip("/") + "/webhooks"
    ingress: Manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **_meta(relay_name(channel), namespace, channel, uid),
            "annotations": dict(options.annotations),
        },
        "spec": {
            "ingressClassName": options.class_name,
            "rules": [
                {
                    "host": url.hostname,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": relay_name(channel),
                                        "port": {"name": "http"},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }
    if options.tls_secret_template:
        ingress["spec"]["tls"] = [
            {
                "hosts": [url.hostname],
                "secretName": options.tls_secret_template.format(name=channel),
            }
        ]
    return ingress
