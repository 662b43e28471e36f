"""Breadcrumbs: entry and exit crumbs, the app's own in order, bounded, per request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sentry_sdk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    capture_message,
    get_request_id,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request, websocket
from tests.conftest import SentryInit
from tests.events import crumb_messages


async def capture_then_answer(scope: Any, receive: Any, send: Any) -> None:
    add_breadcrumb("first", category="app")
    add_breadcrumb("second", category="app", level="warning", data={"n": 2})
    capture_message("during")
    await ok(scope, receive, send)


async def answer_then_capture(scope: Any, receive: Any, send: Any) -> None:
    add_breadcrumb("before the response")
    await ok(scope, receive, send)
    add_breadcrumb("after the response")
    capture_message("after")


async def test_entry_crumb_then_the_apps_crumbs_in_order(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    await request(SentryContextMiddleware(capture_then_answer), "/upload", method="POST")
    [event] = ingest.wait_for_events(1)
    crumbs = event["breadcrumbs"]["values"]
    assert crumb_messages(event) == ["POST /upload", "first", "second"]
    assert crumbs[0]["category"] == "request"
    assert crumbs[0]["type"] == "http"
    assert crumbs[0]["data"]["method"] == "POST"
    assert crumbs[0]["data"]["request_id"] == event["tags"]["request_id"]
    assert crumbs[2]["category"] == "app"
    assert crumbs[2]["level"] == "warning"
    assert crumbs[2]["data"] == {"n": 2}


async def test_work_after_the_response_sees_the_exit_crumb(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    await request(SentryContextMiddleware(answer_then_capture), "/job")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == [
        "GET /job",
        "before the response",
        "GET /job -> 200",
        "after the response",
    ]
    exit_crumb = event["breadcrumbs"]["values"][2]
    assert exit_crumb["category"] == "response"
    assert exit_crumb["data"] == {"status_code": 200}


async def test_a_500_made_by_the_framework_has_an_error_exit_crumb(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def fail(request: Request) -> PlainTextResponse:
        add_breadcrumb("storing")
        raise RuntimeError("storage down")

    app = SentryContextMiddleware(Starlette(routes=[Route("/fail", fail)]))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/fail")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == ["GET /fail", "storing", "GET /fail -> 500"]
    assert event["breadcrumbs"]["values"][-1]["level"] == "error"


async def test_websocket_has_entry_and_close_crumbs(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        capture_message("closed")

    await websocket(SentryContextMiddleware(app), "/live")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == ["WEBSOCKET /live", "WEBSOCKET /live -> 1000"]


async def test_no_crumbs_of_an_earlier_request(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        add_breadcrumb(f"crumb of {scope['path']}")
        if scope["path"] == "/second":
            capture_message("second")
        await ok(scope, receive, send)

    wrapped = SentryContextMiddleware(app)
    await request(wrapped, "/first")
    await request(wrapped, "/second")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == ["GET /second", "crumb of /second"]


@pytest.mark.parametrize(
    "options",
    [{}, {"breadcrumbs": False}, {"exclude_paths": ["/"]}],
    ids=["default", "breadcrumbs-off", "excluded-path"],
)
async def test_no_crumbs_from_before_the_request(
    options: dict[str, Any], sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    add_breadcrumb("outside any request, before it")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        add_breadcrumb("inside")
        capture_message("inside")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app, **options))
    [event] = ingest.wait_for_events(1)
    assert "outside any request, before it" not in crumb_messages(event)
    assert "inside" in crumb_messages(event)


async def test_excluded_paths_get_no_request_crumbs_matched_exactly(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    app = SentryContextMiddleware(answer_then_capture, exclude_paths=["/health"])
    await request(app, "/health")
    await request(app, "/health/deep")
    await request(app, "/healthz")
    excluded, deeper, similar = ingest.wait_for_events(3)
    assert crumb_messages(excluded) == ["before the response", "after the response"]
    assert crumb_messages(deeper)[0] == "GET /health/deep"
    assert crumb_messages(similar)[0] == "GET /healthz"


async def test_excluded_paths_still_get_a_request_id_and_isolation(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((get_request_id(), sentry_sdk.get_isolation_scope()))
        sentry_sdk.set_tag("health", "checked")
        capture_message("health")
        await ok(scope, receive, send)

    response = await request(
        SentryContextMiddleware(app, exclude_paths=["/health"]),
        "/health",
        headers=[(b"x-request-id", b"hc-1")],
    )
    [event] = ingest.wait_for_events(1)
    assert response.header("x-request-id") == ["hc-1"]
    assert seen[0][0] == "hc-1"
    assert seen[0][1] is not sentry_sdk.get_isolation_scope()
    assert "health" not in sentry_sdk.get_isolation_scope()._tags
    assert event["tags"]["request_id"] == "hc-1"


async def test_breadcrumbs_off_keeps_only_the_apps_crumbs(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    await request(SentryContextMiddleware(answer_then_capture, breadcrumbs=False), "/job")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == ["before the response", "after the response"]


async def test_crumbs_are_bounded_by_max_breadcrumbs_keeping_the_entry_crumb(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(max_breadcrumbs=5)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for n in range(20):
            add_breadcrumb(f"step {n}")
        await ok(scope, receive, send)
        capture_message("after")

    await request(SentryContextMiddleware(app), "/many")
    [event] = ingest.wait_for_events(1)
    assert crumb_messages(event) == [
        "GET /many",
        "step 17",
        "step 18",
        "step 19",
        "GET /many -> 200",
    ]
