"""The apps under test: a raw ASGI hello app, and Starlette and FastAPI apps with one JSON route.

Each builder returns a fresh app, so that a configuration can wrap it (or add
middleware to it) without touching another configuration's app. The
``Workload`` options make the raw app do more per request (business fields,
breadcrumbs, one captured event) for the scaling section and the event rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any

import sentry_sdk

from asgi_sentry_ctx import add_breadcrumb, set_business_context

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]

APP_KINDS = ("raw", "starlette", "fastapi")


@dataclass(frozen=True)
class Workload:
    """What the app does per request besides answering ``hello``."""

    business_fields: int = 0
    breadcrumbs: int = 0
    capture: bool = False

    @property
    def is_plain(self) -> bool:
        return self == Workload()


def raw_app(workload: Workload = Workload()) -> ASGIApp:
    """A hello-world ASGI 3 app: two ``send`` calls and nothing else, unless ``workload`` says."""
    if workload.is_plain:

        async def hello(scope: Scope, receive: Receive, send: Send) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
                }
            )
            await send({"type": "http.response.body", "body": b"hello"})

        return hello

    fields = {f"field_{i}": str(i) for i in range(workload.business_fields)}
    crumbs = range(workload.breadcrumbs)

    async def working_hello(scope: Scope, receive: Receive, send: Send) -> None:
        if fields:
            set_business_context(**fields)
        for i in crumbs:
            add_breadcrumb("step", category="bench", data={"i": i})
        if workload.capture:
            sentry_sdk.capture_message("bench event")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
            }
        )
        await send({"type": "http.response.body", "body": b"hello"})

    return working_hello


def starlette_app() -> Any:
    """A Starlette app with one route answering JSON."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/", hello)])


def fastapi_app() -> Any:
    """A FastAPI app with one route answering JSON."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def build_app(kind: str, workload: Workload = Workload()) -> Any:
    if kind == "raw":
        return raw_app(workload)
    if not workload.is_plain:
        raise ValueError(f"workloads run on the raw app only, not on {kind!r}")
    if kind == "starlette":
        return starlette_app()
    if kind == "fastapi":
        return fastapi_app()
    raise ValueError(f"unknown app kind {kind!r}")
