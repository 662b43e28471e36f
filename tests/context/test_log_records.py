"""Request context on log records: the logging filter and the structlog processor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import sentry_sdk
import structlog

from asgi_sentry_ctx import (
    RequestContextFilter,
    SentryContextMiddleware,
    add_request_context,
    clear_user,
    set_user,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import ProductionInit
from tests.events import telemetry_items


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def handler() -> Iterator[Collect]:
    collect = Collect()
    collect.addFilter(RequestContextFilter())
    collect.setFormatter(logging.Formatter("%(request_id)s %(user_id)s %(message)s"))
    log = logging.getLogger("tests.logs")
    log.addHandler(collect)
    log.setLevel(logging.INFO)
    log.propagate = False
    yield collect
    log.removeHandler(collect)
    log.setLevel(logging.NOTSET)
    log.propagate = True


log = logging.getLogger("tests.logs")


async def test_records_carry_the_request_id_and_the_user_set(handler: Collect) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.info("before login")
        set_user("u-1", email="a@b.c")
        log.info("after login")
        clear_user()
        log.info("after logout")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-log")])
    assert handler.lines == [
        "r-log None before login",
        "r-log u-1 after login",
        "r-log None after logout",
    ]


def test_records_outside_a_request_carry_none(handler: Collect) -> None:
    log.info("at start-up")
    [record] = handler.records
    assert record.request_id is None  # type: ignore[attr-defined]
    assert record.user_id is None  # type: ignore[attr-defined]
    assert handler.lines == ["None None at start-up"]


async def test_the_user_extractor_is_never_called_per_record(handler: Collect) -> None:
    calls: list[Any] = []

    def extractor(scope: Any) -> str:
        calls.append(scope)
        return "u-2"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for n in range(5):
            log.info("line %d", n)
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app, user_extractor=extractor))
    assert len(handler.records) == 5
    assert calls == []
    assert all(r.user_id is None for r in handler.records)  # type: ignore[attr-defined]


async def test_records_from_a_worker_thread_carry_the_request_id(handler: Collect) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.to_thread(log.info, "in a thread")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-thread")])
    assert handler.lines == ["r-thread None in a thread"]


class TestStructlog:
    @pytest.fixture
    def captured(self) -> tuple[Any, list[MutableMapping[str, Any]]]:
        seen: list[MutableMapping[str, Any]] = []

        def capture(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
            seen.append(dict(event_dict))
            return ""

        class Sink:
            def info(self, message: str) -> None:
                pass

        logger = structlog.wrap_logger(Sink(), processors=[add_request_context, capture])
        return logger, seen

    async def test_adds_the_request_id_and_the_user_id(
        self, captured: tuple[Any, list[MutableMapping[str, Any]]]
    ) -> None:
        logger, seen = captured

        async def app(scope: Any, receive: Any, send: Any) -> None:
            logger.info("anonymous")
            set_user(7)
            logger.info("known")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-sl")])
        assert seen == [
            {"event": "anonymous", "request_id": "r-sl"},
            {"event": "known", "request_id": "r-sl", "user_id": "7"},
        ]

    async def test_values_bound_by_the_app_win(
        self, captured: tuple[Any, list[MutableMapping[str, Any]]]
    ) -> None:
        logger, seen = captured

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_user("u-1")
            logger.bind(request_id="mine", user_id="also-mine").info("bound")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        assert seen == [{"event": "bound", "request_id": "mine", "user_id": "also-mine"}]

    def test_adds_nothing_outside_a_request(
        self, captured: tuple[Any, list[MutableMapping[str, Any]]]
    ) -> None:
        logger, seen = captured
        logger.info("start-up")
        assert seen == [{"event": "start-up"}]


def sentry_logs(ingest: SentryIngest) -> list[dict[str, Any]]:
    return telemetry_items(ingest, "log")


@pytest.mark.sdk_feature("logs")
class TestSentryStructuredLogs:
    async def test_a_log_sent_in_a_request_carries_its_request_id_and_user(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(enable_logs=True)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_user("u-9")
            sentry_sdk.logger.info("upload started")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-slog")])
        [entry] = sentry_logs(ingest)
        assert entry["body"] == "upload started"
        assert entry["attributes"]["request_id"] == "r-slog"
        assert entry["attributes"]["user.id"] == "u-9"

    async def test_a_logging_record_sent_as_a_sentry_log_carries_the_request_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(enable_logs=True)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            log.warning("disk almost full")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-rec")])
        entries = [e for e in sentry_logs(ingest) if e["body"] == "disk almost full"]
        assert [e["attributes"]["request_id"] for e in entries] == ["r-rec"]

    def test_a_log_outside_a_request_has_no_request_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(enable_logs=True)
        sentry_sdk.logger.info("at start-up")
        [entry] = sentry_logs(ingest)
        assert "request_id" not in entry["attributes"]

    async def test_the_apps_own_hook_sees_the_request_id_and_its_attributes_win(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        seen: list[str] = []

        def before_send_log(entry: Any, hint: Any) -> Any:
            seen.append(entry["attributes"]["request_id"])
            entry["attributes"]["request_id"] = "overridden"
            return entry

        production(enable_logs=True, before_send_log=before_send_log)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            sentry_sdk.logger.info("hello", attributes={"user.id": "from-the-app"})
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-hook")])
        [entry] = sentry_logs(ingest)
        assert seen == ["r-hook"]
        assert entry["attributes"]["request_id"] == "overridden"

    async def test_a_raising_hook_of_the_app_keeps_the_log(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        def before_send_log(entry: Any, hint: Any) -> Any:
            raise RuntimeError("broken hook")

        production(enable_logs=True, before_send_log=before_send_log)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            sentry_sdk.logger.info("kept")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"r-kept")])
        [entry] = sentry_logs(ingest)
        assert entry["attributes"]["request_id"] == "r-kept"
