"""Beside sentry-sdk's own framework integration, and with Sentry unreachable."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.starlette import StarletteIntegration
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    capture_message,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import SentryInit
from tests.events import crumb_messages, events_before_marker


class UploadFailed(Exception):
    pass


scopes: list[Any] = []


async def upload(request: Request) -> PlainTextResponse:
    scopes.append(sentry_sdk.get_isolation_scope())
    set_user("user-123")
    set_business_context(podcast_id="123", action="upload")
    add_breadcrumb("storing", category="upload")
    raise UploadFailed("GCS upload failed")


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(get_request_id() or "")


ROUTES = [Route("/upload", upload, methods=["POST"]), Route("/hello", hello)]


async def post_upload(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/upload", headers={"X-Request-ID": "req-up"})


def assert_our_context(event: dict[str, Any]) -> None:
    assert event["exception"]["values"][-1]["type"] == "UploadFailed"
    assert event["tags"]["request_id"] == "req-up"
    assert event["tags"]["podcast_id"] == "123"
    assert event["contexts"]["business"] == {"podcast_id": "123", "action": "upload"}
    assert event["user"]["id"] == "user-123"
    assert crumb_messages(event)[:2] == ["POST /upload", "storing"]


@pytest.mark.parametrize("defaults", [True, False], ids=["default-integrations", "no-dedupe"])
async def test_outermost_beside_the_starlette_integration_one_event_with_our_context(
    defaults: bool, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(default_integrations=defaults, integrations=[StarletteIntegration()])
    response = await post_upload(SentryContextMiddleware(Starlette(routes=ROUTES)))
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-up"
    [event] = events_before_marker(ingest)
    assert_our_context(event)


@pytest.mark.parametrize("defaults", [True, False], ids=["default-integrations", "no-dedupe"])
async def test_added_with_add_middleware_under_the_starlette_integration_one_event(
    defaults: bool, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(default_integrations=defaults, integrations=[StarletteIntegration()])
    app = Starlette(routes=ROUTES, middleware=[Middleware(SentryContextMiddleware)])
    response = await post_upload(app)
    assert response.status_code == 500
    [event] = events_before_marker(ingest)
    assert_our_context(event)


async def test_auto_enabled_integrations_one_event_with_our_context(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(auto_enabling_integrations=True, traces_sample_rate=1.0)
    response = await post_upload(SentryContextMiddleware(Starlette(routes=ROUTES)))
    assert response.status_code == 500
    [event] = events_before_marker(ingest)
    assert_our_context(event)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sentry_down_requests_still_succeed(sentry_init: SentryInit) -> None:
    sentry_init(dsn=f"http://public@127.0.0.1:{closed_port()}/1")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        capture_message("nobody receives this")
        if scope["path"] == "/fail":
            raise UploadFailed("still the app's own error")
        await ok(scope, receive, send)

    wrapped = SentryContextMiddleware(app)
    for _ in range(20):
        response = await request(wrapped, "/ok")
        assert response.status == 200
        assert response.body == b"ok"
    with pytest.raises(UploadFailed):
        await request(wrapped, "/fail")
    sentry_sdk.flush(2)
    assert (await request(wrapped, "/ok")).status == 200


async def test_sentry_down_under_a_starlette_app(sentry_init: SentryInit) -> None:
    sentry_init(
        dsn=f"http://public@127.0.0.1:{closed_port()}/1", integrations=[StarletteIntegration()]
    )
    app = SentryContextMiddleware(Starlette(routes=ROUTES))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/hello", headers={"X-Request-ID": "req-down"})
    assert response.status_code == 200
    assert response.text == "req-down"
