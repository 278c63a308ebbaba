"""A small generic Kubernetes client on kubernetes-asyncio: get, server-side apply,
merge-patch, delete and status patches for any kind the operator owns, by apiVersion and
kind.

Owned objects go through server-side apply: the apiserver then knows which fields the
operator set, and drops one the operator stops setting (a merge patch cannot: switching a
relay from RollingUpdate to Recreate left the defaulted ``rollingUpdate`` block behind,
which the apiserver refuses)."""

from __future__ import annotations

import json
from hashlib import sha256
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from igbridge.relay.channel_status import GROUP, KIND, PLURAL

PLURALS = {
    "Secret": "secrets",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Deployment": "deployments",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    KIND: PLURAL,
    "Ingress": "ingresses",
    "PodDisruptionBudget": "poddisruptionbudgets",
}
MERGE_PATCH = "application/merge-patch+json"
# JSON is YAML: the body is sent as JSON under the apply content type.
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "igbridge-operator"
APPLIED_ANNOTATION = f"{GROUP}/applied-sha256"
# force: the operator is the authority on what it owns; a field someone else took over
# (kubectl edit, an HPA on replicas) is taken back rather than failing the reconcile.
APPLY_PARAMS = [("fieldManager", FIELD_MANAGER), ("force", "true")]


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        data = await self._api.call_api(
            path,
            method,
            query_params=query or [],
            body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=True,
        )
        return data if isinstance(data, dict) else {}

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self._call("GET", resource_path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        found = await self._call("GET", resource_path(api_version, kind, namespace))
        items = found.get("items") or []
        return [i for i in items if isinstance(i, dict)]

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: the object as the manifest says, created if missing; fields
        the operator applied before and left out now are removed."""
        meta = manifest["metadata"]
        path = resource_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        body = {k: v for k, v in manifest.items() if k != "status"}
        return await self._call("PATCH", path, body, content_type=APPLY_PATCH, query=APPLY_PARAMS)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete the object; False when it was not there."""
        try:
            await self._call("DELETE", resource_path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def apply_reporting(self, manifest: dict[str, Any]) -> str:
        """Like ``apply``, saying what happened: "created", "updated", or "unchanged"
        (then nothing is sent). Unchanged means every field the manifest sets already
        holds its value (fields the apiserver adds, defaults and status, do not count) and
        the manifest is the one last applied: a field the operator stopped setting (a
        toleration taken out of the chart's values) is then removed."""
        manifest = stamped(manifest)
        meta = manifest["metadata"]
        args = (manifest["apiVersion"], manifest["kind"], meta["namespace"])
        current = await self.get(*args, meta["name"])
        if current is None:
            await self.apply(manifest)
            return "created"
        desired = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "status")}
        if _holds(current, desired):
            return "unchanged"
        await self.apply(manifest)
        return "updated"

    async def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name)
        return await self._call("PATCH", path, patch, content_type=MERGE_PATCH)

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name) + "/status"
        return await self._call("PATCH", path, {"status": status}, content_type=MERGE_PATCH)


def stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with a digest of itself in an annotation, so a later manifest that
    only leaves a field out still differs from what the object holds."""
    blob = json.dumps(manifest, sort_keys=True).encode()
    meta = manifest["metadata"]
    annotations = {**(meta.get("annotations") or {}), APPLIED_ANNOTATION: sha256(blob).hexdigest()}
    return {**manifest, "metadata": {**meta, "annotations": annotations}}


def _holds(current: Any, desired: Any) -> bool:
    """Does ``current`` already have every value ``desired`` sets? Lists match item by
    item, so defaults the apiserver fills into containers or ports do not count."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            _holds(current.get(k), v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_holds(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)
