"""Request bodies checked against Genesys's own API definition, through its Python SDK.

The SDK (``purecloudplatformclientv2``, import name ``PureCloudPlatformClientV2``) is
generated from the definition Genesys serves: each model's ``swagger_types`` and
``attribute_map`` name every field and its type, and each enum setter carries its
``allowed_values``. Whether a field is required is not in the code, only in the SDK's
generated docs, so it is copied into ``REQUIRED`` below.

``violations(model, body)`` walks a decoded JSON body and lists what Genesys would refuse:
unknown fields at any depth, wrong types, values outside an enum, missing required fields.
Each is reported with its JSON path: ``content[0].contentType: unknown field``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

SDK_PACKAGE = "PureCloudPlatformClientV2"
INSTALL_HINT = (
    "Genesys's SDK (purecloudplatformclientv2) is needed to check Genesys request bodies: "
    "install the sandbox extra, e.g. pip install 'igbridge[sandbox]'"
)

# Required fields (JSON names) of every model a checked body can reach. Source: the SDK's
# docs, build/docs/<Model>.md in github.com/MyPureCloud/platform-client-sdk-python (version
# 269.0.0): a field not marked "[optional]" is required. A model missing here is an error,
# so a body reaching a new model cannot pass unnoticed.
REQUIRED: dict[str, frozenset[str]] = {
    "OpenInboundNormalizedMessage": frozenset({"channel"}),
    "OpenInboundMessageMessagingChannel": frozenset({"from", "time"}),
    "OpenMessagingFromRecipient": frozenset({"id", "idType"}),
    "ConversationChannelMetadata": frozenset(),
    "OpenInboundMessageContent": frozenset(),
    "OpenContentAttachment": frozenset({"mediaType", "url", "mime"}),
    "OpenContentThumbnail": frozenset({"url"}),
    "OpenInboundNormalizedReceipt": frozenset({"id", "channel", "status"}),
    "OpenInboundMessagingReceiptChannel": frozenset({"to", "time"}),
    "OpenMessagingToRecipient": frozenset({"id"}),
    "ConversationReason": frozenset({"message"}),
    "OpenInboundNormalizedEvent": frozenset({"channel", "events"}),
    "OpenInboundMessagingChannel": frozenset({"from", "time"}),
    "OpenEvent": frozenset({"eventType"}),
    "OpenInboundStructuredResponseMessage": frozenset(
        {"channel", "buttonResponse", "originatingMessageId"}
    ),
    "ContentButtonResponse": frozenset({"type", "text", "payload"}),
    "OpenIntegrationRequest": frozenset(
        {
            "name",
            "outboundNotificationWebhookUrl",
            "outboundNotificationWebhookSignatureSecretToken",
        }
    ),
    "OpenIntegrationUpdateRequest": frozenset({"name"}),
    "SupportedContentReference": frozenset({"id"}),
    "MediaTypes": frozenset(),
    "MediaTypeAccess": frozenset(),
    "MediaType": frozenset(),
    "MessagingSettingRequestReference": frozenset({"id"}),
    "RecipientRequest": frozenset(),
    "RecipientFlow": frozenset(),
    "RoutingConversationAttributesRequest": frozenset(),
    "RequestScoredAgent": frozenset(),
}

# The one extension of the generated schema. The SDK types a message channel's
# ``metadata`` as ConversationChannelMetadata with only ``subType``, yet Genesys's Open
# Messaging docs (and its developer forum) put custom attributes, a flat string map, at
# ``channel.metadata.customAttributes``: the field an Architect flow routes on. (A
# top-level ``metadata.customAttributes`` is refused: top-level ``metadata`` is the SDK's
# plain string map, which does not become participant data.)
EXTENSIONS: dict[str, dict[str, str]] = {
    "ConversationChannelMetadata": {"customAttributes": "dict(str, str)"},
}

_PRIMITIVES = frozenset({"str", "int", "bool", "float", "datetime", "date", "object"})
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(str, (.+)\)$")
_ALLOWED = re.compile(r"allowed_values = (\[.*?\])", re.S)


class SdkMissing(RuntimeError):
    """Genesys's SDK is not installed."""


@cache
def sdk() -> ModuleType:
    """The SDK, imported once on first use (it loads every model: a few seconds)."""
    try:
        with _no_live_reload():
            return importlib.import_module(SDK_PACKAGE)
    except ImportError as exc:
        raise SdkMissing(INSTALL_HINT) from exc


# Read by the SDK's Configuration, which its import builds: no watching for changes.
_QUIET_CONFIG = "[general]\nlive_reload_config = false\n"


@contextlib.contextmanager
def _no_live_reload() -> Iterator[None]:
    """Import the SDK with ``HOME`` at a config file that turns its live reload off.

    Its import builds a Configuration that watches the folder of
    ``~/.genesyscloudpython/config`` with watchdog, or, when that folder does not exist,
    the nearest existing parent, recursively: all of ``$HOME``, walked again on every
    change there. Measured: seconds of start-up and minutes of CPU under file churn, for a
    schema check that reads no configuration."""
    with tempfile.TemporaryDirectory(prefix="igbridge-sdk-home-") as home:
        folder = Path(home, ".genesyscloudpython")
        folder.mkdir()
        (folder / "config").write_text(_QUIET_CONFIG)
        previous = os.environ.get("HOME")
        os.environ["HOME"] = home
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = previous


@cache
def _fields(model: str) -> dict[str, tuple[str, str | None]]:
    """JSON name → (SDK type, Python attribute; None for the extension's fields)."""
    if model not in REQUIRED:
        raise KeyError(f"no required-field table for Genesys model {model}: add it to REQUIRED")
    instance = getattr(sdk(), model)()
    fields: dict[str, tuple[str, str | None]] = {
        instance.attribute_map[attr]: (kind, attr) for attr, kind in instance.swagger_types.items()
    }
    fields.update({name: (kind, None) for name, kind in EXTENSIONS.get(model, {}).items()})
    return fields


@cache
def allowed_values(model: str, attr: str) -> tuple[str, ...] | None:
    """The enum the SDK's setter enforces for ``model.attr``, or None for a free string."""
    setter = getattr(getattr(sdk(), model), attr).fset
    found = _ALLOWED.search(inspect.getsource(setter))
    return tuple(ast.literal_eval(found.group(1))) if found else None


def is_iso_datetime(value: object) -> bool:
    """An ISO-8601 date and time, as Genesys's ``datetime`` fields take (a bare date is not)."""
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check(kind: str, value: Any, path: str, out: list[str]) -> None:
    where = path or "body"
    if kind in _PRIMITIVES:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "datetime": is_iso_datetime(value),
            "date": isinstance(value, str),
            "object": True,
        }[kind]
        if not ok and kind == "datetime":
            out.append(f"{where}: expected an ISO-8601 date-time (yyyy-MM-ddTHH:mm:ss[.mmm]Z)")
        elif not ok:
            out.append(f"{where}: expected {kind}, got {_type_name(value)}")
        return
    if match := _LIST.match(kind):
        if not isinstance(value, list):
            out.append(f"{where}: expected a list, got {_type_name(value)}")
            return
        for i, item in enumerate(value):
            _check(match.group(1), item, f"{path}[{i}]", out)
        return
    if match := _DICT.match(kind):
        if not isinstance(value, dict):
            out.append(f"{where}: expected an object, got {_type_name(value)}")
            return
        for key, item in value.items():
            _check(match.group(1), item, f'{path}["{key}"]', out)
        return
    _check_model(kind, value, path, out)


def _check_model(model: str, value: Any, path: str, out: list[str]) -> None:
    if not isinstance(value, dict):
        out.append(f"{path or 'body'}: expected an object ({model}), got {_type_name(value)}")
        return
    fields = _fields(model)
    for name, item in value.items():
        where = _join(path, str(name))
        if name not in fields:
            out.append(f"{where}: unknown field")
            continue
        if item is None:  # null is absence: the SDK never sends it
            continue
        kind, attr = fields[name]
        _check(kind, item, where, out)
        if kind == "str" and attr is not None and isinstance(item, str):
            allowed = allowed_values(model, attr)
            # Exact spelling: the SDK's setter folds case, the API definition does not.
            if allowed is not None and item not in allowed:
                out.append(f"{where}: {item[:40]!r} is not one of {', '.join(allowed)}")
    for name in sorted(REQUIRED[model]):
        if value.get(name) is None:
            out.append(f"{_join(path, name)}: required field missing")


def violations(model: str, body: Any) -> list[str]:
    """Everything in ``body`` Genesys's definition of ``model`` refuses (empty: valid)."""
    out: list[str] = []
    _check_model(model, body, "", out)
    return out


def first_violation(model: str, body: Any) -> str | None:
    found = violations(model, body)
    return found[0] if found else None
