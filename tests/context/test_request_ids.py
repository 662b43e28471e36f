"""Request IDs: which incoming IDs are reused, how new ones are made, where they are read."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    bind_context,
    capture_message,
    get_request_id,
    is_valid_request_id,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request, websocket
from tests.conftest import SentryInit

HEX32 = "0123456789abcdef"


def is_generated(value: str) -> bool:
    return len(value) == 32 and all(ch in HEX32 for ch in value)


def id_header(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", value)]


def recording(seen: list[str | None]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_request_id())
        await ok(scope, receive, send)

    return app


class TestValidity:
    """The validity rule: 1 to 128 ASCII letters, digits and ``-_.:``."""

    @pytest.mark.parametrize(
        "value",
        ["a", "A-Z_0.9:x", "0" * 128, "550e8400-e29b-41d4-a716-446655440000", "trace:1.2_3"],
    )
    def test_safe_ids_are_valid(self, value: str) -> None:
        assert is_valid_request_id(value)

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "0" * 129,
            "has space",
            "tab\there",
            "line\nfeed",
            "crlf\r\nX-Injected: 1",
            "nul\x00",
            "slash/",
            "plus+",
            "équipe",
            "١٢٣",  # non-ASCII digits
            "\uff46\uff55\uff4c\uff4c",  # fullwidth letters
            "trailing-newline\n",
        ],
    )
    def test_unsafe_ids_are_invalid(self, value: str) -> None:
        assert not is_valid_request_id(value)


class TestIncoming:
    """Which incoming IDs are reused, and which are replaced."""

    async def test_valid_incoming_id_is_reused_when_trusted(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen)), headers=id_header(b"req-1.2:3_x")
        )
        assert seen == ["req-1.2:3_x"]
        assert response.header("x-request-id") == ["req-1.2:3_x"]

    async def test_absent_id_is_replaced_by_a_fresh_one(self) -> None:
        seen: list[str | None] = []
        app = SentryContextMiddleware(recording(seen))
        first = await request(app)
        second = await request(app)
        [first_id] = first.header("x-request-id")
        [second_id] = second.header("x-request-id")
        assert is_generated(first_id)
        assert is_generated(second_id)
        assert first_id != second_id
        assert seen == [first_id, second_id]

    async def test_invalid_incoming_id_is_replaced(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen)), headers=id_header(b"not valid!")
        )
        [echoed] = response.header("x-request-id")
        assert is_generated(echoed)
        assert seen == [echoed]

    async def test_too_long_incoming_id_is_replaced(self) -> None:
        seen: list[str | None] = []
        await request(SentryContextMiddleware(recording(seen)), headers=id_header(b"a" * 129))
        assert seen[0] is not None
        assert is_generated(seen[0])

    async def test_incoming_id_of_128_chars_is_reused(self) -> None:
        seen: list[str | None] = []
        await request(SentryContextMiddleware(recording(seen)), headers=id_header(b"a" * 128))
        assert seen == ["a" * 128]

    async def test_untrusted_incoming_id_is_replaced(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen), trust_incoming=False),
            headers=id_header(b"req-1"),
        )
        [echoed] = response.header("x-request-id")
        assert is_generated(echoed)
        assert seen == [echoed]

    async def test_the_app_sees_the_id_in_use_in_place_of_a_rejected_one(self) -> None:
        seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["headers"])
            await ok(scope, receive, send)

        wrapped = SentryContextMiddleware(app)
        response = await request(
            wrapped, headers=[(b"x-request-id", b"bad id!"), (b"accept", b"*/*")]
        )
        [echoed] = response.header("x-request-id")
        assert seen[0] == [
            (b"host", b"testserver"),
            (b"accept", b"*/*"),
            (b"x-request-id", echoed.encode()),
        ]

    async def test_the_app_sees_a_reused_or_absent_id_header_unchanged(self) -> None:
        seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["headers"])
            await ok(scope, receive, send)

        wrapped = SentryContextMiddleware(app)
        await request(wrapped, headers=[(b"x-request-id", b"good-1")])
        await request(wrapped)
        assert seen == [
            [(b"host", b"testserver"), (b"x-request-id", b"good-1")],
            [(b"host", b"testserver")],
        ]

    async def test_header_name_option_reads_and_echoes_that_header(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen), header_name="X-Correlation-ID"),
            headers=[(b"x-correlation-id", b"corr-1"), (b"x-request-id", b"other")],
        )
        assert seen == ["corr-1"]
        assert response.header("x-correlation-id") == ["corr-1"]
        assert response.header("x-request-id") == []


class TestCustomIds:
    """``id_validator`` and ``id_generator``."""

    async def test_custom_validator_decides_which_incoming_ids_are_reused(self) -> None:
        seen: list[str | None] = []
        app = SentryContextMiddleware(recording(seen), id_validator=lambda v: v.startswith("ok-"))
        await request(app, headers=id_header(b"ok-1"))
        await request(app, headers=id_header(b"no-1"))
        assert seen[0] == "ok-1"
        assert seen[1] is not None
        assert is_generated(seen[1])

    async def test_custom_validator_never_lets_an_unsafe_id_through(self) -> None:
        seen: list[str | None] = []
        app = SentryContextMiddleware(recording(seen), id_validator=lambda v: True)
        response = await request(app, headers=id_header(b"evil\r\nSet-Cookie: a=b"))
        [echoed] = response.header("x-request-id")
        assert is_generated(echoed)
        assert seen == [echoed]

    async def test_raising_validator_replaces_the_id_and_keeps_the_request(self) -> None:
        def validator(value: str) -> bool:
            raise ValueError("validator bug")

        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen), id_validator=validator),
            headers=id_header(b"req-1"),
        )
        assert response.status == 200
        assert seen[0] is not None
        assert is_generated(seen[0])

    async def test_custom_generator_makes_new_ids(self) -> None:
        seen: list[str | None] = []
        await request(SentryContextMiddleware(recording(seen), id_generator=lambda: "gen-1"))
        assert seen == ["gen-1"]

    async def test_invalid_generated_id_is_replaced_by_a_safe_one(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen), id_generator=lambda: "bad\r\nid")
        )
        [echoed] = response.header("x-request-id")
        assert is_generated(echoed)
        assert seen == [echoed]


class TestEcho:
    """Where the ID is echoed, and where it is not."""

    async def test_response_header_false_echoes_nothing(self) -> None:
        seen: list[str | None] = []
        response = await request(
            SentryContextMiddleware(recording(seen), response_header=False),
            headers=id_header(b"req-1"),
        )
        assert response.header("x-request-id") == []
        assert seen == ["req-1"]

    async def test_header_set_by_the_app_is_not_duplicated(self) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            headers = [(b"X-Request-ID", b"from-app")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        response = await request(SentryContextMiddleware(app), headers=id_header(b"req-1"))
        assert response.header("x-request-id") == ["from-app"]

    async def test_id_is_echoed_on_websocket_accept(self) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})

        sent = await websocket(SentryContextMiddleware(app), headers=id_header(b"ws-1"))
        accept = sent[0]
        assert accept["type"] == "websocket.accept"
        assert accept["headers"] == [(b"x-request-id", b"ws-1")]

    async def test_id_is_echoed_on_a_500_made_by_starlettes_error_middleware(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def fail(request: Request) -> PlainTextResponse:
            raise RuntimeError("boom")

        app = SentryContextMiddleware(Starlette(routes=[Route("/fail", fail)]))
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/fail", headers={"X-Request-ID": "req-500"})
        assert response.status_code == 500
        assert response.headers.get_list("x-request-id") == ["req-500"]
        [event] = ingest.wait_for_events(1)
        assert event["tags"]["request_id"] == "req-500"


class TestTag:
    async def test_every_event_of_the_request_is_tagged_with_its_id(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            capture_message("one")
            capture_message("two")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=id_header(b"req-tag"))
        events = ingest.wait_for_events(2)
        assert [e["tags"]["request_id"] for e in events] == ["req-tag", "req-tag"]


class TestGetRequestId:
    """``get_request_id()`` wherever the request's work runs."""

    async def run(self, work: Any) -> list[str | None]:
        seen: list[str | None] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(await work())
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=id_header(b"req-42"))
        return seen

    async def test_in_the_handler(self) -> None:
        async def work() -> str | None:
            return get_request_id()

        assert await self.run(work) == ["req-42"]

    async def test_in_a_task_spawned_by_the_handler(self) -> None:
        async def work() -> str | None:
            async def child() -> str | None:
                await asyncio.sleep(0)
                return get_request_id()

            return await asyncio.create_task(child())

        assert await self.run(work) == ["req-42"]

    async def test_in_asyncio_to_thread(self) -> None:
        async def work() -> str | None:
            return await asyncio.to_thread(get_request_id)

        assert await self.run(work) == ["req-42"]

    async def test_in_starlettes_threadpool(self) -> None:
        async def work() -> str | None:
            return await run_in_threadpool(get_request_id)

        assert await self.run(work) == ["req-42"]

    async def test_in_run_in_executor_with_bind_context(self) -> None:
        async def work() -> str | None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, bind_context(get_request_id))

        assert await self.run(work) == ["req-42"]

    async def test_not_in_a_raw_run_in_executor(self) -> None:
        """Executors copy no context: this is why ``bind_context`` exists."""

        async def work() -> str | None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, get_request_id)

        assert await self.run(work) == [None]

    async def test_bind_context_runs_each_call_in_its_own_copy(self) -> None:
        var: contextvars.ContextVar[int] = contextvars.ContextVar("n", default=0)

        def bump() -> int:
            var.set(var.get() + 1)
            return var.get()

        bound = bind_context(bump)
        assert [bound(), bound()] == [1, 1]
        assert var.get() == 0

    async def test_none_outside_a_request(self) -> None:
        assert get_request_id() is None
        await request(SentryContextMiddleware(ok), headers=id_header(b"req-1"))
        assert get_request_id() is None
