"""Behaviours that the hot path's shortcuts must keep (batched IDs, plain send wrapper, memo,
fast scope fork)."""

from __future__ import annotations

import os
import re
import threading
from typing import Any, cast

import sentry_sdk
from sentry_sdk.scope import Scope

from asgi_sentry_ctx import SentryContextMiddleware, get_request_id
from asgi_sentry_ctx.context import isolation
from asgi_sentry_ctx.context.request_ids import generate_request_id
from tests.asgi import request
from tests.conftest import SentryInit

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_generated_ids_are_distinct_128_bit_hex_across_batches() -> None:
    ids = [generate_request_id() for _ in range(2000)]  # several batches of 256
    assert all(HEX_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_threads_drawing_ids_at_once_never_share_one() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def draw(out: list[str]) -> None:
        start.wait()
        out.extend(generate_request_id() for _ in range(3000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in drawn for i in out]
    assert len(set(every)) == len(every) == 12000


def test_forked_child_never_repeats_the_ids_its_parent_draws_next() -> None:
    generate_request_id()  # the parent now holds a batch of ready IDs
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, generate_request_id().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_id = pipe.read()
    os.waitpid(pid, 0)
    assert HEX_ID.fullmatch(child_id)
    assert child_id != generate_request_id()


START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}


async def test_app_resending_one_message_object_gets_each_requests_own_id() -> None:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_request_id())
        await send(START)  # the same dict object for every request
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = SentryContextMiddleware(app)
    first = await request(middleware)
    second = await request(middleware)
    assert first.header("x-request-id") == [seen[0]]
    assert second.header("x-request-id") == [seen[1]]
    assert seen[0] != seen[1]
    assert START["headers"] == [(b"content-type", b"text/plain")]


async def test_response_header_set_by_the_app_in_another_case_is_kept() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"X-Request-ID", b"mine")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    response = await request(SentryContextMiddleware(app))
    assert response.header("x-request-id") == ["mine"]


async def test_current_scope_is_forked_once_tracing_is_turned_on_by_a_new_init(
    sentry_init: SentryInit,
) -> None:
    outer: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        outer.append(sentry_sdk.get_current_scope() is outside)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = SentryContextMiddleware(app)
    sentry_init()  # traces off: the current scope is left alone
    outside = sentry_sdk.get_current_scope()
    await request(middleware)
    sentry_init(traces_sample_rate=1.0)  # a new client: the remembered answer must not stick
    outside = sentry_sdk.get_current_scope()
    await request(middleware)
    assert outer == [True, False]


def populated_scope() -> Scope:
    scope = Scope()
    scope.set_tag("tag", "value")
    scope.set_context("ctx", {"key": "value"})
    scope.set_extra("extra", 1)
    scope.set_user({"id": "user-1"})
    scope.set_level("warning")
    scope.fingerprint = ["fp"]
    scope.set_transaction_name("GET /episodes", source="route")
    scope._breadcrumbs.append({"message": "crumb"})  # add_breadcrumb needs a client
    scope.add_event_processor(lambda event, hint: event)
    scope.add_error_processor(lambda event, exc_info: event)
    scope.add_attachment(bytes=b"data", filename="a.txt")
    scope.flags.set("flag", True)
    scope.set_attribute("attribute", "value")
    return scope


def test_fast_fork_is_in_use_with_the_pinned_sentry_sdk() -> None:
    # If an upgrade changes the scope's attributes, the SDK's own __copy__ takes
    # over (correct, slower): this pin says it is time to look again.
    assert isolation._fork is isolation._copy_scope


def test_fast_fork_copies_every_attribute_as_the_sdks_copy_does() -> None:
    original = populated_scope()
    ours, theirs = isolation._copy_scope(original), original.__copy__()
    for name in Scope.__slots__:
        mine, sdk = getattr(ours, name), getattr(theirs, name)
        if name == "_flags":
            assert mine.get() == sdk.get()
        else:
            assert mine == sdk, name
        shared_by_sdk = sdk is getattr(original, name)
        assert (mine is getattr(original, name)) == shared_by_sdk, name


def test_writes_to_a_fast_fork_never_reach_the_scope_it_came_from() -> None:
    original = populated_scope()
    fork = isolation._copy_scope(original)
    fork.set_tag("tag", "changed")
    fork.set_context("ctx", {"key": "changed"})
    fork._breadcrumbs.append({"message": "later"})
    fork.add_event_processor(lambda event, hint: None)
    fork.flags.set("flag", False)
    fork.set_attribute("attribute", "changed")
    assert original._tags == {"tag": "value"}
    assert original._contexts == {"ctx": {"key": "value"}}
    assert [crumb["message"] for crumb in original._breadcrumbs] == ["crumb"]
    assert len(original._event_processors) == 1
    assert original.flags.get() == [{"flag": "flag", "result": True}]
    assert original._attributes == {"attribute": "value"}


def test_a_scope_subclass_is_forked_by_its_own_copy() -> None:
    class TracedScope(Scope):
        __slots__ = ("extra",)
        extra: str

        def __copy__(self) -> TracedScope:
            fork = cast(TracedScope, super().__copy__())
            fork.extra = self.extra
            return fork

    original = TracedScope()
    original.extra = "kept"
    fork = isolation._copy_scope(original)
    assert type(fork) is TracedScope
    assert fork.extra == "kept"
