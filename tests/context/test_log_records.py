"""Request context on log records: the logging filter and the structlog processor."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from asgi_sentry_ctx import (
    RequestContextFilter,
    SentryContextMiddleware,
    add_request_context,
    clear_user,
    set_user,
)
from tests.asgi import ok, request


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
