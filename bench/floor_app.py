"""The floor for CPU per inbound message: what any Python middleware on this stack must
do for one webhook, with no store and nothing else: uvicorn and Starlette take the POST,
the signature is checked, the JSON parsed, one message POSTed with aiohttp to a sink
(``FLOOR_SINK_URL``), and the webhook answered once the sink has. The relay's CPU per
delivered message is measured against this process's in the same run."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SECRET = os.environ.get("FLOOR_APP_SECRET", "").encode()
SINK = os.environ.get("FLOOR_SINK_URL", "")
session: aiohttp.ClientSession | None = None


async def receive(request: Request) -> JSONResponse:
    raw = await request.body()
    expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
        return JSONResponse({"error": "bad signature"}, status_code=401)
    event = json.loads(raw)["entry"][0]["messaging"][0]
    message = {
        "channel": {"from": {"id": event["sender"]["id"]}, "messageId": event["message"]["mid"]},
        "type": "Text",
        "text": event["message"].get("text", ""),
        "direction": "Inbound",
    }
    assert session is not None
    async with session.post(SINK, data=json.dumps(message).encode()) as resp:
        await resp.read()
    return JSONResponse({"ok": True})


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global session
    session = aiohttp.ClientSession()
    try:
        yield
    finally:
        await session.close()


app = Starlette(routes=[Route("/webhooks/instagram", receive, methods=["POST"])], lifespan=lifespan)
