"""Isolation: an own Sentry scope per request, nothing left behind, one fork beside the SDK's."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    capture_message,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import SentryInit
from tests.events import events_before_marker


class Boom(Exception):
    pass


async def busy(scope: Any, receive: Any, send: Any) -> None:
    """Sets everything a request can set, then answers or fails."""
    set_user("user-1")
    sentry_sdk.set_tag("left", "behind")
    set_business_context(podcast_id="p-1")
    add_breadcrumb("in the request")
    if scope["path"] == "/fail":
        raise Boom("failed")
    await ok(scope, receive, send)


def recording_scopes(seen: list[Any], app: Any) -> Any:
    async def record(scope: Any, receive: Any, send: Any) -> None:
        seen.append(sentry_sdk.get_isolation_scope())
        await app(scope, receive, send)

    return record


async def test_every_request_runs_in_its_own_isolation_scope(sentry_init: SentryInit) -> None:
    sentry_init()
    seen: list[Any] = []
    app = SentryContextMiddleware(recording_scopes(seen, ok))
    await request(app)
    await request(app)
    outside = sentry_sdk.get_isolation_scope()
    assert seen[0] is not seen[1]
    assert outside not in seen


@pytest.mark.parametrize("path", ["/ok", "/fail"])
async def test_nothing_of_the_request_remains_in_the_callers_context(
    path: str, sentry_init: SentryInit
) -> None:
    sentry_init()
    before = sentry_sdk.get_isolation_scope()
    with contextlib.suppress(Boom):
        await request(SentryContextMiddleware(busy), path, headers=[(b"x-request-id", b"r-1")])
    assert get_request_id() is None
    assert current_business_context() == {}
    scope = sentry_sdk.get_isolation_scope()
    assert scope is before
    assert scope._user is None
    assert "left" not in scope._tags
    assert not [c for c in scope._breadcrumbs if c.get("message") == "in the request"]


async def test_a_later_request_sees_nothing_of_an_earlier_one(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def quiet(scope: Any, receive: Any, send: Any) -> None:
        capture_message("later")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(busy), "/ok")
    await request(SentryContextMiddleware(quiet), "/later")
    [event] = ingest.wait_for_events(1)
    assert "user" not in event
    assert "left" not in event["tags"]
    assert "podcast_id" not in event["tags"]
    assert "business" not in event.get("contexts", {})
    assert "in the request" not in str(event.get("breadcrumbs"))


class TestInsideTheSdksMiddleware:
    """sentry-sdk's ``SentryAsgiMiddleware`` wraps ours (as its framework integrations do)."""

    async def test_ours_reuses_the_sdks_isolation_scope(self, sentry_init: SentryInit) -> None:
        sentry_init()
        sdk_scope: list[Any] = []
        inner_scope: list[Any] = []
        ours = SentryContextMiddleware(recording_scopes(inner_scope, ok))
        app = SentryAsgiMiddleware(recording_scopes(sdk_scope, ours))
        await request(app)
        assert sdk_scope[0] is inner_scope[0]

    @pytest.mark.parametrize(
        "defaults", [True, False], ids=["dedupe-on", "no-default-integrations"]
    )
    async def test_an_escaping_exception_makes_exactly_one_event(
        self, defaults: bool, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init(default_integrations=defaults)
        app = SentryAsgiMiddleware(SentryContextMiddleware(busy))
        with pytest.raises(Boom):
            await request(app, "/fail", headers=[(b"x-request-id", b"r-sdk")])
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][-1]["type"] == "Boom"
        assert event["tags"]["request_id"] == "r-sdk"
        assert event["tags"]["podcast_id"] == "p-1"
        assert event["user"]["id"] == "user-1"


class TestAroundTheSdksMiddleware:
    """Ours wraps sentry-sdk's ``SentryAsgiMiddleware`` (the documented outermost set-up)."""

    @pytest.mark.parametrize(
        "defaults", [True, False], ids=["dedupe-on", "no-default-integrations"]
    )
    async def test_an_escaping_exception_makes_exactly_one_event_with_our_context(
        self, defaults: bool, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init(default_integrations=defaults)
        app = SentryContextMiddleware(SentryAsgiMiddleware(busy))
        with pytest.raises(Boom):
            await request(app, "/fail", headers=[(b"x-request-id", b"r-outer")])
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][-1]["type"] == "Boom"
        assert event["tags"]["request_id"] == "r-outer"
        assert event["tags"]["podcast_id"] == "p-1"
        assert event["contexts"]["business"] == {"podcast_id": "p-1"}
        assert event["user"]["id"] == "user-1"

    async def test_a_message_carries_our_context(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_user("user-2")
            capture_message("hello")
            await ok(scope, receive, send)

        await request(
            SentryContextMiddleware(SentryAsgiMiddleware(app)),
            headers=[(b"x-request-id", b"r-msg")],
        )
        [event] = ingest.wait_for_events(1)
        assert event["tags"]["request_id"] == "r-msg"
        assert event["user"]["id"] == "user-2"


async def test_each_request_is_a_trace_of_its_own(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        capture_message("in the request")
        await ok(scope, receive, send)

    middleware = SentryContextMiddleware(app)
    await request(middleware)
    await request(middleware)
    first, second = ingest.wait_for_events(2)
    assert first["contexts"]["trace"]["trace_id"] != second["contexts"]["trace"]["trace_id"]
