"""Business context: searchable tags plus a ``business`` block, in requests and in jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    business_context,
    capture_message,
    set_business_context,
)
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import SentryInit


async def test_fields_become_tags_and_a_business_block(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="123", episode_id=7, action="upload")
        capture_message("uploaded")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    [event] = ingest.wait_for_events(1)
    assert event["contexts"]["business"] == {
        "podcast_id": "123",
        "episode_id": 7,
        "action": "upload",
    }
    assert event["tags"]["podcast_id"] == "123"
    assert event["tags"]["episode_id"] == "7"
    assert event["tags"]["action"] == "upload"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("k" * 33, "v"),
        ("has space", "v"),
        ("key/slash", "v"),
        ("field", "v" * 201),
        ("field", "two\nlines"),
        ("field", "carriage\rreturn"),
        ("field", ""),
        ("field", {"nested": 1}),
        ("field", [1, 2]),
        ("field", True),
        ("field", b"bytes"),
    ],
    ids=[
        "key-33-chars",
        "key-space",
        "key-slash",
        "value-201-chars",
        "value-newline",
        "value-cr",
        "value-empty",
        "value-dict",
        "value-list",
        "value-bool",
        "value-bytes",
    ],
)
async def test_invalid_tags_are_kept_only_in_the_block(
    key: str, value: Any, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    with business_context(podcast_id="p", **{key: value}):
        capture_message("job")
    [event] = ingest.wait_for_events(1)
    assert key not in event["tags"]
    assert event["tags"]["podcast_id"] == "p"
    assert key in event["contexts"]["business"]
    if not isinstance(value, bytes):
        expected = list(value) if isinstance(value, list) else value
        assert event["contexts"]["business"][key] == expected


async def test_limits_themselves_are_valid_tags(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    with business_context(**{"k" * 32: "v" * 200, "a.b:c-d_e": 1.5}):
        capture_message("job")
    [event] = ingest.wait_for_events(1)
    assert event["tags"]["k" * 32] == "v" * 200
    assert event["tags"]["a.b:c-d_e"] == "1.5"


async def test_none_removes_a_field(sentry_init: SentryInit, ingest: SentryIngest) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="123", action="upload")
        set_business_context(action=None)
        capture_message("after removal")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    [event] = ingest.wait_for_events(1)
    assert event["contexts"]["business"] == {"podcast_id": "123"}
    assert "action" not in event["tags"]


async def test_later_fields_are_added_to_earlier_ones(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="123")
        set_business_context(episode_id="e-1", podcast_id="456")
        capture_message("merged")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    [event] = ingest.wait_for_events(1)
    assert event["contexts"]["business"] == {"podcast_id": "456", "episode_id": "e-1"}


def test_business_context_restores_the_previous_value_outside_any_request() -> None:
    with business_context(podcast_id="job-1"):
        assert current_business_context() == {"podcast_id": "job-1"}
    assert current_business_context() == {}


def test_business_context_restores_the_previous_value_on_exception() -> None:
    def job() -> None:
        with business_context(action="transcribe"):
            assert current_business_context() == {"podcast_id": "outer", "action": "transcribe"}
            raise RuntimeError("job failed")

    with business_context(podcast_id="outer"):
        with pytest.raises(RuntimeError):
            job()
        assert current_business_context() == {"podcast_id": "outer"}
    assert current_business_context() == {}


def test_nested_blocks_add_to_and_override_the_outer_one() -> None:
    with business_context(podcast_id="p-1", action="sync"):
        with business_context(action="transcribe", episode_id="e-1"):
            assert current_business_context() == {
                "podcast_id": "p-1",
                "action": "transcribe",
                "episode_id": "e-1",
            }
            with business_context(podcast_id=None):
                assert current_business_context() == {"action": "transcribe", "episode_id": "e-1"}
        assert current_business_context() == {"podcast_id": "p-1", "action": "sync"}


async def test_a_background_job_event_carries_its_block(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()
    with business_context(podcast_id="p-9", action="transcribe"):
        capture_message("in the job")
    capture_message("after the job")
    inside, after = ingest.wait_for_events(2)
    assert inside["contexts"]["business"] == {"podcast_id": "p-9", "action": "transcribe"}
    assert inside["tags"]["action"] == "transcribe"
    assert "business" not in after.get("contexts", {})
    assert "action" not in after.get("tags", {})


async def test_a_block_inside_a_request_ends_with_the_block(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-1")
        with business_context(action="upload"):
            capture_message("in the block")
        capture_message("after the block")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    inside, after = ingest.wait_for_events(2)
    assert inside["contexts"]["business"] == {"podcast_id": "p-1", "action": "upload"}
    assert after["contexts"]["business"] == {"podcast_id": "p-1"}


async def test_fields_set_in_a_worker_thread_reach_the_requests_unhandled_error(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    """A sync view or dependency runs in a thread; its fields still belong to the request."""
    sentry_init()

    def sync_view() -> None:
        set_business_context(podcast_id="p-thread", action="upload")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.to_thread(sync_view)
        raise RuntimeError("upload failed")

    with pytest.raises(RuntimeError):
        await request(SentryContextMiddleware(app))
    [event] = ingest.wait_for_events(1)
    assert event["contexts"]["business"] == {"podcast_id": "p-thread", "action": "upload"}
    assert event["tags"]["podcast_id"] == "p-thread"


async def test_fields_set_in_a_child_task_reach_the_requests_later_events(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def child() -> None:
        set_business_context(episode_id="e-1")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.create_task(child())
        capture_message("after child")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    [event] = ingest.wait_for_events(1)
    assert event["contexts"]["business"] == {"episode_id": "e-1"}


async def test_concurrent_blocks_in_one_request_keep_their_own_fields(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def per_episode(episode_id: str) -> None:
        with business_context(episode_id=episode_id):
            await asyncio.sleep(0)
            capture_message(f"episode {episode_id}")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-1")
        await asyncio.gather(*(per_episode(str(n)) for n in range(5)))
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    events = ingest.wait_for_events(5)
    for event in events:
        episode_id = event["message"].removeprefix("episode ")
        assert event["contexts"]["business"] == {"podcast_id": "p-1", "episode_id": episode_id}


async def test_a_block_wins_over_the_requests_fields_and_ends_with_the_block(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-1", action="sync")
        with business_context(action="transcribe"):
            capture_message("inside")
        capture_message("after")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    inside, after = ingest.wait_for_events(2)
    assert inside["contexts"]["business"] == {"podcast_id": "p-1", "action": "transcribe"}
    assert after["contexts"]["business"] == {"podcast_id": "p-1", "action": "sync"}


async def test_request_fields_end_with_the_request() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-1")
        assert current_business_context() == {"podcast_id": "p-1"}
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app))
    assert current_business_context() == {}


class TestFieldsSetOutsideAnyRequest:
    """Start-up fields are defaults: outside < the request's own < blocks inside the request."""

    async def test_the_requests_own_fields_override_them(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        set_business_context(service="api", podcast_id="default")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_business_context(podcast_id="123")
            capture_message("in the request")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        [event] = ingest.wait_for_events(1)
        assert event["contexts"]["business"] == {"service": "api", "podcast_id": "123"}
        assert event["tags"]["podcast_id"] == "123"

    async def test_a_block_a_request_runs_in_is_a_default_too(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_business_context(action="upload")
            capture_message("in the request")
            await ok(scope, receive, send)

        with business_context(action="default", service="api"):
            await request(SentryContextMiddleware(app))
        [event] = ingest.wait_for_events(1)
        assert event["contexts"]["business"] == {"action": "upload", "service": "api"}

    async def test_a_block_inside_the_request_overrides_the_requests_fields_and_them(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        set_business_context(action="default", service="api")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_business_context(action="sync", podcast_id="p-1")
            with business_context(action="transcribe"), business_context(episode_id="e-1"):
                capture_message("inside")
            capture_message("after")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        inside, after = ingest.wait_for_events(2)
        assert inside["contexts"]["business"] == {
            "action": "transcribe",
            "service": "api",
            "podcast_id": "p-1",
            "episode_id": "e-1",
        }
        assert after["contexts"]["business"] == {
            "action": "sync",
            "service": "api",
            "podcast_id": "p-1",
        }

    async def test_they_are_in_force_again_after_the_request(self) -> None:
        set_business_context(podcast_id="default")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_business_context(podcast_id="123")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        assert current_business_context() == {"podcast_id": "default"}
