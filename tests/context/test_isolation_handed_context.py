"""A request the server starts in a copy of another request's context starts from the base.

uvicorn on the asyncio loop does this to the next request on a connection after
a large body, and to pipelined requests (see FIELD-NOTES.md). The copy is taken
inside the earlier request: while it reads its body (its scopes in force) or
while its last response message is sent (its scopes hidden). These tests hand a
request both kinds of copy, in process and deterministically;
tests/context/test_isolation_on_real_servers.py shows real servers doing it.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    business_context,
    capture_message,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.context.state import current_request
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ASGIApp, Response, http_scope, ok, request
from tests.conftest import ProductionInit, SentryInit
from tests.events import as_json, crumb_messages

WHERE = ["reading its body", "sending its last message"]


async def app(scope: Any, receive: Any, send: Any) -> None:
    """``/upload`` sets everything a request can, before and after reading its
    body; any other path captures a message."""
    if scope["path"] != "/upload":
        capture_message(f"at {scope['path']}")
        await ok(scope, receive, send)
        return
    with business_context(episode_id="e-first"):
        set_user("user-first")
        sentry_sdk.set_tag("early", "first")
        add_breadcrumb("first, before the body")
        await receive()
        sentry_sdk.set_tag("t", "first")
        set_business_context(podcast_id="p-first")
        add_breadcrumb("first, after the body")
        await ok(scope, receive, send)


async def contexts_left_by_an_upload(asgi_app: ASGIApp) -> dict[str, contextvars.Context]:
    """Run ``/upload``; return copies of its context taken where servers take them."""
    taken: dict[str, contextvars.Context] = {}

    async def receive() -> dict[str, Any]:
        taken["reading its body"] = contextvars.copy_context()
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            taken["sending its last message"] = contextvars.copy_context()

    await asgi_app(http_scope("/upload", method="POST"), receive, send)
    return taken


async def request_in(context: contextvars.Context, asgi_app: ASGIApp, path: str) -> Response:
    return await asyncio.create_task(request(asgi_app, path), context=context.copy())


def of_the_upload(event: dict[str, Any]) -> list[str]:
    """Whatever of the upload request an event carries."""
    text = as_json(event)
    return [mark for mark in ("first", "e-first", "p-first") if mark in text]


@pytest.mark.parametrize("where", WHERE)
async def test_the_request_carries_nothing_of_the_request_it_was_handed(
    where: str, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    middleware = SentryContextMiddleware(app)
    handed = (await contexts_left_by_an_upload(middleware))[where]
    response = await request_in(handed, middleware, "/next")
    [event] = ingest.wait_for_events(1)
    assert of_the_upload(event) == []
    assert "user" not in event
    assert crumb_messages(event) == ["GET /next"]
    assert event["tags"]["request_id"] == response.header("x-request-id")[0]


@pytest.mark.parametrize("where", WHERE)
async def test_the_request_keeps_what_was_set_outside_any_request(
    where: str, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    middleware = SentryContextMiddleware(app)
    with sentry_sdk.isolation_scope():  # the start-up's scope, this test's alone
        sentry_sdk.set_tag("service", "api")
        set_business_context(region="eu")
        handed = (await contexts_left_by_an_upload(middleware))[where]
        await request_in(handed, middleware, "/next")
    [event] = ingest.wait_for_events(1)
    assert event["tags"]["service"] == "api"
    assert event["contexts"]["business"] == {"region": "eu"}


@pytest.mark.parametrize("where", WHERE)
async def test_the_context_it_was_handed_is_as_it_was_after_the_request(
    where: str, sentry_init: SentryInit
) -> None:
    sentry_init()
    middleware = SentryContextMiddleware(app)
    handed = (await contexts_left_by_an_upload(middleware))[where]
    before = handed.run(lambda: (current_request(), sentry_sdk.get_isolation_scope()))

    async def then_look() -> tuple[Any, ...]:
        await request(middleware, "/next")
        return current_request(), sentry_sdk.get_isolation_scope(), current_business_context()

    state, scope, fields = await asyncio.create_task(then_look(), context=handed)
    assert (state, scope) == before
    assert fields == {"episode_id": "e-first", "podcast_id": "p-first"}


class TestInsideTheSdksMiddleware:
    """sentry-sdk's middleware outside ours: in a handed context it sees its own
    flag still set and does nothing, so ours must start the request from the base."""

    @pytest.mark.parametrize("where", WHERE)
    async def test_the_request_carries_nothing_of_the_request_it_was_handed(
        self, where: str, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        middleware = SentryAsgiMiddleware(SentryContextMiddleware(app))
        with sentry_sdk.isolation_scope():  # the start-up's scope, this test's alone
            production(traces_sample_rate=0.0)
            sentry_sdk.set_tag("service", "api")  # at start-up, after init_sentry
            handed = (await contexts_left_by_an_upload(middleware))[where]
            await request_in(handed, middleware, "/next")
        [event] = ingest.wait_for_events(1)
        assert of_the_upload(event) == []
        assert "user" not in event
        assert crumb_messages(event) == ["GET /next"]
        assert event["tags"]["service"] == "api"
        assert event["request"]["url"].endswith("/next")


async def test_a_request_an_app_makes_in_process_is_a_request_of_its_own(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    inner = SentryContextMiddleware(app)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        set_user("user-outer")
        set_business_context(podcast_id="p-outer")
        await request(inner, "/inner")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(outer), "/outer")
    [event] = ingest.wait_for_events(1)
    assert "user" not in event
    assert "business" not in event.get("contexts", {})
    assert crumb_messages(event) == ["GET /inner"]
