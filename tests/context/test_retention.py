"""A finished request leaves nothing heavy behind in contexts that a server keeps.

uvicorn arms its keep-alive timer while the response's last message is sent,
and the timer holds a copy of the context it was armed in until the
connection's next request. Had that copy held the request's forked Sentry
scope and the server's per-request objects, a few dozen idle keep-alive
connections would keep enough objects alive to make the garbage collector
run full collections under load (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import time
import types
import weakref
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from sentry_sdk.scope import Scope, _current_scope, _isolation_scope

from asgi_sentry_ctx import SentryContextMiddleware, capture_message
from asgi_sentry_ctx.context.state import RequestState, current_request
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import Message, http_scope, lifespan, ok
from tests.conftest import SentryInit
from tests.servers import serve


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def request_scopes(besides: Sequence[Scope] = ()) -> list[Scope]:
    """The Sentry scopes alive now that were forked for one of our requests (and are
    not in ``besides``: those earlier tests left for the collector)."""
    return [
        obj
        for obj in gc.get_objects()
        # Not ``isinstance``: it reads ``__class__``, which some lazy objects
        # (Django's settings, imported by sentry-sdk) evaluate, and fail.
        if issubclass(type(obj), Scope)
        and any(isinstance(processor, RequestState) for processor in obj._event_processors)
        and not any(obj is earlier for earlier in besides)
    ]


async def test_the_last_response_message_is_sent_outside_the_request_scope() -> None:
    seen: dict[str, Any] = {}

    async def server_send(message: Message) -> None:
        seen[message["type"]] = _isolation_scope.get()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["app"] = sentry_sdk.get_isolation_scope()
        await ok(scope, receive, send)

    await SentryContextMiddleware(app)(http_scope(), receive, server_send)
    assert seen["http.response.start"] is seen["app"]
    assert seen["http.response.body"] is None


async def test_inside_the_sdks_middleware_its_request_scopes_are_hidden_too(
    sentry_init: SentryInit,
) -> None:
    sentry_init()
    seen: dict[str, Any] = {}

    async def server_send(message: Message) -> None:
        seen[message["type"]] = (_isolation_scope.get(), _current_scope.get())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["app"] = (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope())
        await ok(scope, receive, send)

    await SentryAsgiMiddleware(SentryContextMiddleware(app))(http_scope(), receive, server_send)
    assert seen["http.response.start"] == seen["app"]
    assert seen["http.response.body"] == (None, None)


async def test_app_code_after_the_last_message_runs_in_the_request_scope_again() -> None:
    after: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        before = sentry_sdk.get_isolation_scope()
        await ok(scope, receive, send)
        after.extend([sentry_sdk.get_isolation_scope() is before, current_request()])

    async def server_send(message: Message) -> None:
        pass

    await SentryContextMiddleware(app)(http_scope(), receive, server_send)
    assert after[0] is True
    assert after[1] is not None


async def test_an_error_after_the_last_message_is_reported_with_the_request_context(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await ok(scope, receive, send)
        capture_message("after the response")

    async def server_send(message: Message) -> None:
        pass

    headers = [(b"x-request-id", b"req-after")]
    await SentryContextMiddleware(app)(http_scope(headers=headers), receive, server_send)
    [event] = ingest.wait_for_events(1)
    assert event["tags"]["request_id"] == "req-after"
    assert event["request"]["url"].endswith("/")


async def test_a_streamed_body_is_sent_in_the_request_scope_until_its_last_chunk() -> None:
    seen: list[Any] = []

    async def server_send(message: Message) -> None:
        seen.append(_isolation_scope.get())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    await SentryContextMiddleware(app)(http_scope(), receive, server_send)
    assert seen[0] is not None
    assert seen[1] is seen[0]
    assert seen[2] is None


def reachable(root: object) -> list[object]:
    """Everything ``root`` keeps alive through data (not through code: functions,
    classes and modules reach the whole process)."""
    seen: dict[int, object] = {id(root): root}
    todo = [root]
    while todo:
        for child in gc.get_referents(todo.pop()):
            if id(child) in seen or isinstance(
                child, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType
            ):
                continue
            seen[id(child)] = child
            todo.append(child)
    return list(seen.values())


async def test_a_context_copied_during_the_last_message_keeps_no_scope_or_token_alive() -> None:
    copies: list[contextvars.Context] = []

    async def server_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            copies.append(contextvars.copy_context())  # as uvicorn's keep-alive timer does

    await SentryContextMiddleware(ok)(http_scope(), receive, server_send)
    [copied] = copies
    kept = reachable(copied)
    assert copied[_isolation_scope] is None
    forked = request_scopes()
    assert not [obj for obj in kept if any(obj is scope for scope in forked)]
    # A token holds the whole context it was made in: the request task's.
    assert not [obj for obj in kept if isinstance(obj, contextvars.Token)]


async def test_the_request_lets_go_of_the_servers_send_once_it_is_over() -> None:
    class ServerSend:
        async def __call__(self, message: Message) -> None:
            if message["type"] == "http.response.body":
                copies.append(contextvars.copy_context())

    copies: list[contextvars.Context] = []
    server_send = ServerSend()
    alive = weakref.ref(server_send)
    await SentryContextMiddleware(ok)(http_scope(), receive, server_send)
    del server_send
    gc.collect()
    assert copies  # the copy still holds the request's state ...
    assert alive() is None  # ... but not the server's send


async def test_a_send_after_the_request_is_over_raises() -> None:
    kept: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        kept.append(send)
        await ok(scope, receive, send)

    async def server_send(message: Message) -> None:
        pass

    await SentryContextMiddleware(app)(http_scope(), receive, server_send)
    with pytest.raises(RuntimeError, match="after the request was over"):
        await kept[0]({"type": "http.response.body", "body": b"late"})


async def served_ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await ok(scope, receive, send)


def test_idle_uvicorn_keep_alive_connections_hold_no_finished_requests_scope(
    sentry_init: SentryInit,
) -> None:
    sentry_init()
    earlier = request_scopes()
    with serve(SentryContextMiddleware(served_ok)) as url:
        clients = [httpx.Client(base_url=url) for _ in range(5)]  # 5 keep-alive connections
        try:
            for client in clients:
                for _ in range(3):
                    assert client.get("/").status_code == 200
            # A request's task ends just after its response arrived: allow it that.
            deadline = time.monotonic() + 5
            while request_scopes(earlier) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert request_scopes(earlier) == []
        finally:
            for client in clients:
                client.close()


def test_the_check_above_sees_a_request_scope_that_a_context_copy_holds() -> None:

    async def server_send(message: Message) -> None:
        pass

    held: list[contextvars.Context] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        held.append(contextvars.copy_context())  # taken in the request scope
        await ok(scope, receive, send)

    earlier = request_scopes()
    asyncio.run(SentryContextMiddleware(app)(http_scope(), receive, server_send))
    assert len(request_scopes(earlier)) == 1
    held.clear()
    assert request_scopes(earlier) == []
