"""SentryContextMiddleware on a raw ASGI app: request IDs, isolation, breadcrumbs, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    capture_message,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit
from tests.events import events_before_marker


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


class Boom(Exception):
    pass


async def failing(scope: Any, receive: Any, send: Any) -> None:
    add_breadcrumb("about to fail", category="test")
    raise Boom("upload failed")


async def test_error_event_carries_request_id_user_business_and_breadcrumbs(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def upload(scope: Any, receive: Any, send: Any) -> None:
        set_user("user-123", email="u@example.com")
        set_business_context(podcast_id="123", action="upload")
        add_breadcrumb("validated", category="upload")
        add_breadcrumb("storing", category="upload", data={"bytes": 10})
        raise Boom("GCS upload failed")

    app = SentryContextMiddleware(upload)
    with pytest.raises(Boom):
        await request(
            app, "/api/media/upload", method="POST", headers=[(b"x-request-id", b"req-abc")]
        )
    [event] = ingest.wait_for_events(1)
    assert event["tags"]["request_id"] == "req-abc"
    assert event["tags"]["podcast_id"] == "123"
    assert event["tags"]["action"] == "upload"
    assert event["user"] == {"id": "user-123"}  # no email without PII allowed
    assert event["contexts"]["business"] == {"podcast_id": "123", "action": "upload"}
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"] == "http://testserver/api/media/upload"
    crumbs = [(c["category"], c["message"]) for c in event["breadcrumbs"]["values"]]
    assert crumbs == [
        ("request", "POST /api/media/upload"),
        ("upload", "validated"),
        ("upload", "storing"),
    ]
    [exc] = event["exception"]["values"]
    assert exc["type"] == "Boom"
    assert exc["mechanism"] == {"type": "asgi_sentry_ctx", "handled": False}


async def test_exception_is_reported_once_and_reraised(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    with pytest.raises(Boom):
        await request(SentryContextMiddleware(failing))
    sentry_sdk.flush(5)
    capture_message("marker")
    events = ingest.wait_for_events(2)
    assert [e.get("message") or e["exception"]["values"][0]["type"] for e in events] == [
        "Boom",
        "marker",
    ]


async def test_request_id_is_echoed_on_the_response(sentry_init: SentryInit) -> None:
    sentry_init()
    response = await request(SentryContextMiddleware(hello), headers=[(b"x-request-id", b"abc-1")])
    assert response.header("x-request-id") == ["abc-1"]


async def test_get_request_id_is_none_outside_and_set_inside_a_request() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_request_id())
        await hello(scope, receive, send)

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-1")])
    assert seen == ["r-1"]
    assert get_request_id() is None


async def test_concurrent_requests_never_see_each_others_context(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        n = scope["path"].strip("/")
        set_user(f"user-{n}")
        await asyncio.sleep(0)
        set_business_context(podcast_id=n)
        add_breadcrumb(f"crumb-{n}")
        await asyncio.sleep(0)
        capture_message(f"message-{n}")
        await hello(scope, receive, send)

    wrapped = SentryContextMiddleware(app)
    count = 200
    await asyncio.gather(
        *(
            request(wrapped, f"/{n}", headers=[(b"x-request-id", f"rid-{n}".encode())])
            for n in range(count)
        )
    )
    events = ingest.wait_for_events(count)
    assert len(events) == count
    for event in events:
        n = event["message"].removeprefix("message-")
        assert event["tags"]["request_id"] == f"rid-{n}"
        assert event["tags"]["podcast_id"] == n
        assert event["user"] == {"id": f"user-{n}"}
        assert [c["message"] for c in event["breadcrumbs"]["values"]] == [f"GET /{n}", f"crumb-{n}"]


class TestPassThrough:
    @pytest.mark.parametrize("kind", ["lifespan", "custom.protocol"])
    async def test_other_scope_types_reach_the_app_untouched(self, kind: str) -> None:
        seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append((scope, receive, send))

        scope = {"type": kind, "asgi": {"version": "3.0"}}

        async def receive() -> Any:
            return {}

        async def send(message: Any) -> None:
            pass

        await SentryContextMiddleware(app)(scope, receive, send)
        [(got_scope, got_receive, got_send)] = seen
        assert got_scope is scope
        assert got_scope == {"type": kind, "asgi": {"version": "3.0"}}
        assert got_receive is receive
        assert got_send is send

    async def test_a_lifespan_failure_propagates_without_our_report(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise Boom("startup failed")

        async def receive() -> Any:
            return {"type": "lifespan.startup"}

        async def send(message: Any) -> None:
            pass

        with pytest.raises(Boom):
            await SentryContextMiddleware(app)({"type": "lifespan"}, receive, send)
        assert events_before_marker(ingest) == []
