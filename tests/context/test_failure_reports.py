"""``report_failure``: one failure to Sentry and to every registered sink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asgi_sentry_ctx import (
    Failure,
    SentryContextMiddleware,
    register_sink,
    report_failure,
    set_business_context,
    set_user,
    unregister_sink,
)
from asgi_sentry_ctx.context.failure_reports import Sink
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import SentryInit


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    """Sinks registered by a test, unregistered after it."""
    registered: list[Sink] = []
    yield registered
    for sink in registered:
        unregister_sink(sink)


def register(sinks: list[Sink], sink: Sink) -> None:
    sinks.append(register_sink(sink))


async def in_request(report: Any) -> Any:
    """Run ``report()`` inside a request by user-123 about podcast 123."""
    result: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_user("user-123")
        set_business_context(podcast_id="123", action="upload")
        result.append(report())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=SentryContextMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        await client.post("/upload", headers={"X-Request-ID": "req-1"})
    return result[0]


async def test_the_failure_reaches_sentry_with_its_category_code_and_request_context(
    ingest: SentryIngest, sentry_init: SentryInit
) -> None:
    sentry_init()
    event_id = await in_request(
        lambda: report_failure("upload failed", category="upload", code="GCS_503", episode=42)
    )
    [event] = ingest.wait_for_events(1)
    assert event["event_id"] == event_id
    assert event["message"] == "upload failed"
    assert event["level"] == "error"
    tags = event["tags"]
    assert (tags["failure.category"], tags["failure.code"]) == ("upload", "GCS_503")
    assert (tags["request_id"], tags["podcast_id"]) == ("req-1", "123")
    assert event["user"]["id"] == "user-123"
    assert event["contexts"]["failure"] == {"category": "upload", "code": "GCS_503", "episode": 42}
    assert event["contexts"]["business"] == {"podcast_id": "123", "action": "upload"}


async def test_a_sink_receives_the_failure_with_its_request_context(
    sentry_init: SentryInit, sinks: list[Sink]
) -> None:
    sentry_init()
    received: list[Failure] = []
    register(sinks, received.append)
    event_id = await in_request(lambda: report_failure("upload failed", category="upload"))
    [failure] = received
    assert failure.event_id == event_id
    assert (failure.request_id, failure.user_id) == ("req-1", "user-123")
    assert failure.business == {"podcast_id": "123", "action": "upload"}
    assert (failure.category, failure.code, failure.level) == ("upload", None, "error")


async def test_an_async_sink_runs_on_the_running_loop(
    sentry_init: SentryInit, sinks: list[Sink]
) -> None:
    sentry_init()
    done: asyncio.Queue[Failure] = asyncio.Queue()

    async def notify(failure: Failure) -> None:
        await done.put(failure)

    register(sinks, notify)
    event_id = report_failure("quota exceeded", category="billing", code=402)
    failure = await asyncio.wait_for(done.get(), timeout=10)
    assert failure.event_id == event_id


def test_an_async_sink_without_a_running_loop_completes_before_report_returns(
    sentry_init: SentryInit, sinks: list[Sink]
) -> None:
    sentry_init()
    received: list[str] = []

    async def notify(failure: Failure) -> None:
        await asyncio.sleep(0)
        received.append(failure.event_id)

    register(sinks, notify)
    event_id = report_failure("job failed", category="transcribe")
    assert received == [event_id]


def test_a_failing_sink_never_stops_sentry_or_the_other_sinks(
    ingest: SentryIngest,
    sentry_init: SentryInit,
    sinks: list[Sink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentry_init()
    received: list[Failure] = []

    def broken(failure: Failure) -> None:
        raise RuntimeError("smtp down")

    register(sinks, broken)
    register(sinks, received.append)
    with caplog.at_level(logging.ERROR, logger="asgi_sentry_ctx"):
        event_id = report_failure("upload failed", category="upload")
    assert [f.event_id for f in received] == [event_id]
    assert [e["event_id"] for e in ingest.wait_for_events(1)] == [event_id]
    assert "smtp down" in caplog.text


async def test_a_failing_async_sink_is_logged(sentry_init: SentryInit, sinks: list[Sink]) -> None:
    sentry_init()
    logged = asyncio.Event()
    records: list[logging.LogRecord] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            logged.set()

    async def broken(failure: Failure) -> None:
        raise RuntimeError("db down")

    register(sinks, broken)
    handler = Recorder(logging.ERROR)
    logging.getLogger("asgi_sentry_ctx").addHandler(handler)
    try:
        report_failure("upload failed", category="upload")
        await asyncio.wait_for(logged.wait(), timeout=10)
    finally:
        logging.getLogger("asgi_sentry_ctx").removeHandler(handler)
    [record] = records
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "db down"


def test_failures_with_a_code_are_grouped_by_category_and_code(
    ingest: SentryIngest, sentry_init: SentryInit
) -> None:
    sentry_init()
    report_failure("upload 1 failed", category="upload", code="GCS_503")
    report_failure("upload 2 failed", category="upload", code="GCS_503")
    events = ingest.wait_for_events(2)
    assert [e["fingerprint"] for e in events] == [["failure", "upload", "GCS_503"]] * 2


def test_an_event_id_is_returned_and_sinks_run_when_sentry_is_off(sinks: list[Sink]) -> None:
    received: list[Failure] = []
    register(sinks, received.append)
    event_id = report_failure("upload failed", category="upload")
    assert len(event_id) == 32
    assert [f.event_id for f in received] == [event_id]
