"""Provisioning Genesys Open Messaging integrations (reference/genesys.md, "Integration
provisioning"), on the relay's Genesys auth and REST client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from igbridge.relay.genesys.errors import GenesysError, PermanentError
from igbridge.relay.genesys.rest import GenesysRest, NotFound

BASE = "/api/v2/conversations/messaging/integrations/open"
RECIPIENTS = "/api/v2/routing/message/recipients"
MAX_PAGES = 1000  # a bound on following nextUri, against a listing that never ends


class IntegrationFailed(PermanentError):
    """Genesys reported ``createStatus: Error``; the message carries its ``createError``."""


class CreateStillPending(GenesysError):
    """``createStatus`` is still ``Initiated``: check again later."""


class Integrations:
    def __init__(self, rest: GenesysRest) -> None:
        self._rest = rest

    async def get(self, integration_id: str) -> dict[str, Any] | None:
        try:
            return await self._rest.request("GET", f"{BASE}/{integration_id}")
        except NotFound:
            return None

    async def find_by_name(self, name: str) -> dict[str, Any] | None:
        """The integration called ``name``, looked for on every page of the listing."""
        number = 1
        while number <= MAX_PAGES:
            page = await self._rest.request("GET", BASE, params={"pageNumber": str(number)})
            for item in page.get("entities") or []:
                if isinstance(item, dict) and item.get("name") == name:
                    return item
            count = page.get("pageCount")
            more = number < count if isinstance(count, int) else bool(page.get("nextUri"))
            if not more or not page.get("entities"):
                return None
            number += 1
        return None

    async def create(
        self,
        name: str,
        webhook_url: str,
        signing_secret: str,
        *,
        supported_content_id: str | None = None,
        messaging_setting_id: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "outboundNotificationWebhookUrl": webhook_url,
            "outboundNotificationWebhookSignatureSecretToken": signing_secret,
            "webhookHeaders": {},
        }
        if supported_content_id:
            body["supportedContent"] = {"id": supported_content_id}
        if messaging_setting_id:
            body["messagingSetting"] = {"id": messaging_setting_id}
        return await self._rest.request("POST", BASE, body)

    async def update(
        self, integration_id: str, fields: dict[str, Any], *, name: str | None = None
    ) -> dict[str, Any]:
        """PATCH ``fields``. Genesys's OpenIntegrationUpdateRequest requires ``name``: when
        the change is not a rename, the current name goes along (``name``, or read first)."""
        body = dict(fields)
        if "name" not in body and name:
            body["name"] = name
        if "name" not in body:
            current = await self.get(integration_id)
            if current is None:
                raise NotFound(f"integration {integration_id} not found", status=404)
            body["name"] = current.get("name")
        return await self._rest.request("PATCH", f"{BASE}/{integration_id}", body)

    async def delete(self, integration_id: str) -> None:
        """Delete it; one that is already gone (404) counts as deleted."""
        try:
            await self._rest.request("DELETE", f"{BASE}/{integration_id}")
        except NotFound:
            return

    async def wait_created(
        self, integration_id: str, *, within: float = 10.0, poll: float = 0.2
    ) -> dict[str, Any]:
        """Poll until ``createStatus`` settles; Completed returns, Error raises."""
        deadline = time.monotonic() + within
        while True:
            current = await self.get(integration_id)
            if current is None:
                raise IntegrationFailed(f"integration {integration_id} disappeared", status=404)
            status = current.get("createStatus")
            if status == "Error":
                raise IntegrationFailed(
                    f"Genesys could not create the integration: {current.get('createError')}",
                    status=400,
                )
            if status in (None, "Completed"):
                return current
            if time.monotonic() >= deadline:
                raise CreateStillPending(f"integration {integration_id} is still being created")
            await asyncio.sleep(poll)

    async def recipient_flow(self, recipient_id: str) -> str | None:
        """The id of the inbound flow on the recipient, None when it has none (or Genesys
        does not know the recipient: nothing is attached to it then either)."""
        try:
            found = await self._rest.request("GET", f"{RECIPIENTS}/{recipient_id}")
        except NotFound:
            return None
        flow = found.get("flow")
        flow_id = flow.get("id") if isinstance(flow, dict) else None
        return str(flow_id) if flow_id else None

    async def attach_flow(self, recipient_id: str, flow_id: str) -> None:
        await self._rest.request("PUT", f"{RECIPIENTS}/{recipient_id}", {"flow": {"id": flow_id}})
