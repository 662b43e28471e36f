"""Capturing: one event per escaping exception, and messages with one-off context."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import EventScrubber

from asgi_sentry_ctx import SentryContextMiddleware, capture_message, set_business_context
from asgi_sentry_ctx.context.capture import report_exception, unwrap_exceptions
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import lifespan, ok, request
from tests.conftest import SentryInit
from tests.events import events_before_marker
from tests.servers import serve


class Boom(Exception):
    pass


class ReadOnlyError(Exception):
    """An exception type that refuses new attributes (so it cannot be marked as reported)."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")


class BrokenScrubber(EventScrubber):
    """Makes the SDK fail while it builds an event (``capture_event`` raises)."""

    def scrub_event(self, event: Any) -> None:
        raise RuntimeError("scrubber bug")


class CaughtAfterResponseStarted(Exception):
    """A framework's wrapper around what the app raised (Litestar has one)."""


class UnwrapperFails(Exception):
    """Raised where the unwrapper below is broken for it."""


def _framework_wrapper(exc: BaseException) -> BaseException | None:
    if isinstance(exc, UnwrapperFails):
        raise LookupError("a broken unwrapper")
    return exc.__cause__ if isinstance(exc, CaughtAfterResponseStarted) else None


# Process-wide, as adapters register theirs; it only knows this module's types.
unwrap_exceptions(_framework_wrapper)


class TestEscapingExceptions:
    async def test_an_exception_escaping_the_app_is_one_event_and_reraised(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        error = Boom("upload failed")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise error

        with pytest.raises(Boom) as raised:
            await request(SentryContextMiddleware(app))
        assert raised.value is error
        [event] = events_before_marker(ingest)
        [exception] = event["exception"]["values"]
        assert exception["type"] == "Boom"
        assert exception["value"] == "upload failed"
        assert exception["mechanism"] == {"type": "asgi_sentry_ctx", "handled": False}
        assert exception["stacktrace"]["frames"][-1]["function"] == "app"

    async def test_an_exception_after_the_response_started_is_one_event(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def streaming(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise Boom("stream broke")

        with pytest.raises(Boom):
            await request(SentryContextMiddleware(streaming))
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["value"] == "stream broke"

    async def test_an_exception_the_app_reported_itself_is_not_reported_again(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init(default_integrations=False)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                raise Boom("handled, then re-raised")
            except Boom as exc:
                sentry_sdk.capture_exception(exc)
                raise

        with pytest.raises(Boom):
            await request(SentryContextMiddleware(app))
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["mechanism"]["handled"] is True

    async def test_report_exception_from_a_framework_hook_then_escaping_is_one_event(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init(default_integrations=False)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                raise Boom("seen by the framework")
            except Boom as exc:
                report_exception(exc, mechanism="framework")
                raise

        with pytest.raises(Boom):
            await request(SentryContextMiddleware(app))
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["mechanism"]["type"] == "framework"

    def test_an_exception_the_app_captured_then_reraised_is_not_sent_again_by_the_servers_log(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        # uvicorn logs "Exception in ASGI application" with the exception after
        # the request; the middleware did not report it (the app had), so only
        # the request's processor marked it. No Dedupe to hide a second event.
        sentry_init(default_integrations=False, integrations=[LoggingIntegration()])

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await lifespan(receive, send)
                return
            try:
                raise Boom("handled, then re-raised")
            except Boom as exc:
                sentry_sdk.capture_exception(exc)
                raise

        with serve(SentryContextMiddleware(app)) as url, httpx.Client(base_url=url) as client:
            assert client.get("/").status_code == 500
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["mechanism"]["handled"] is True

    async def test_an_exception_refusing_attributes_is_one_event_and_reraised_unchanged(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        error = ReadOnlyError("upload failed")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise error

        with pytest.raises(ReadOnlyError) as raised:
            await request(SentryContextMiddleware(app))
        assert raised.value is error
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["value"] == "upload failed"
        assert "request_id" in event["tags"]

    async def test_an_sdk_failure_while_reporting_is_logged_and_the_apps_exception_propagates(
        self, sentry_init: SentryInit, caplog: pytest.LogCaptureFixture
    ) -> None:
        sentry_init(event_scrubber=BrokenScrubber())
        error = Boom("upload failed")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise error

        with pytest.raises(Boom) as raised:
            await request(SentryContextMiddleware(app))
        assert raised.value is error
        assert any("could not report an exception" in r.getMessage() for r in caplog.records)

    async def test_a_framework_wrapper_is_reported_as_the_exception_it_wraps(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                raise Boom("the app's own")
            except Boom as exc:
                raise CaughtAfterResponseStarted("wrapped by the framework") from exc

        with pytest.raises(CaughtAfterResponseStarted):
            await request(SentryContextMiddleware(app))
        [event] = events_before_marker(ingest)
        [exception] = event["exception"]["values"]
        assert (exception["type"], exception["value"]) == ("Boom", "the app's own")
        assert exception["stacktrace"]["frames"][-1]["function"] == "app"

    async def test_a_failing_unwrapper_leaves_the_exception_reported_as_raised(
        self, sentry_init: SentryInit, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise UnwrapperFails("still reported")

        with pytest.raises(UnwrapperFails):
            await request(SentryContextMiddleware(app))
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][-1]["value"] == "still reported"
        assert any("unwrapper failed" in r.getMessage() for r in caplog.records)

    async def test_report_exception_outside_a_request_reports(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        try:
            raise Boom("in a job")
        except Boom as exc:
            report_exception(exc)
        [event] = ingest.wait_for_events(1)
        assert event["exception"]["values"][0]["value"] == "in a job"

    async def test_cancellation_is_not_reported_and_propagates(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise asyncio.CancelledError

        with pytest.raises(asyncio.CancelledError):
            await request(SentryContextMiddleware(app))
        assert events_before_marker(ingest) == []

    async def test_a_cancelled_request_task_is_not_reported(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        started = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            started.set()
            await asyncio.Event().wait()  # until the client goes away

        task = asyncio.create_task(request(SentryContextMiddleware(app)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events_before_marker(ingest) == []


class JobFailed(Exception):
    """What a job runner raises around the error that stopped a job."""


def reported_outside_a_request(message: str) -> Boom:
    """An exception raised and reported where no request runs (a job, a startup task)."""
    try:
        raise Boom(message)
    except Boom as exc:
        report_exception(exc)
        return exc


class TestReportedOutsideARequest:
    """No request's event processor runs here: the mark ``report_exception`` leaves on
    the exception is all that keeps a later log of it from being a second event."""

    def test_logged_again_without_the_sdk_dedupe_it_is_one_event(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        # Not ``disabled_integrations``: sentry-sdk 2.75 ignores it for an
        # integration an earlier ``init`` in the process has set up.
        sentry_init(default_integrations=False, integrations=[LoggingIntegration()])
        error = reported_outside_a_request("nightly import failed")
        logging.getLogger("jobs").error("job failed", exc_info=error)
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][0]["mechanism"]["type"] == "asgi_sentry_ctx"

    def test_logged_again_after_another_error_it_is_one_event(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        # The SDK's Dedupe is on, but it only drops the error it saw last.
        sentry_init()
        error = reported_outside_a_request("nightly import failed")
        reported_outside_a_request("cleanup failed")
        logging.getLogger("jobs").error("job failed", exc_info=error)
        messages = [e["exception"]["values"][0]["value"] for e in events_before_marker(ingest)]
        assert messages == ["nightly import failed", "cleanup failed"]

    def test_logged_again_wrapped_it_is_one_event(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        # The SDK's Dedupe is on, but the logged exception is another object.
        sentry_init()
        error = reported_outside_a_request("feed fetch failed")
        try:
            raise JobFailed("import job failed") from error
        except JobFailed as wrapped:
            logging.getLogger("jobs").error("job failed", exc_info=wrapped)
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][-1]["value"] == "feed fetch failed"


class TestCaptureMessage:
    async def test_context_is_attached_to_that_event_only(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_business_context(podcast_id="p-1")
            capture_message("quota almost used", level="warning", used=980, quota=1000)
            capture_message("later")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        first, later = ingest.wait_for_events(2)
        assert first["level"] == "warning"
        assert first["extra"]["used"] == 980
        assert first["extra"]["quota"] == 1000
        assert first["tags"]["podcast_id"] == "p-1"
        assert "used" not in later.get("extra", {})
        assert "quota" not in later.get("extra", {})
        assert "used" not in sentry_sdk.get_isolation_scope()._extras

    async def test_returns_the_event_id(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        event_id = capture_message("hello", podcast_id="p-1")
        [event] = ingest.wait_for_events(1)
        assert event_id is not None
        assert event["event_id"] == event_id

    def test_returns_none_when_sentry_is_off(self) -> None:
        assert capture_message("nobody listens", answer=42) is None
