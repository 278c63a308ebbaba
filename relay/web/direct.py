"""Starlette, with a few POST routes answered before its middleware and routing.

A webhook ack is small and frequent: Starlette's error and exception middleware, its
route matching and its Request/Response objects cost about as much CPU as the ack's own
work. The paths given to ``DirectApp.direct`` go straight to their raw ASGI handler; every
other request (and those paths' other methods) takes the ordinary way. An exception in a
direct handler reaches the server, which logs it and answers 500 as Starlette would.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send


class DirectApp(Starlette):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct_posts: dict[str, ASGIApp] = {}

    def direct(self, paths: list[str], handler: ASGIApp) -> None:
        """POSTs to ``paths`` (exact, as the server gives them) go to ``handler``."""
        for path in paths:
            self.direct_posts[path] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.direct_posts.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
