"""Which mechanisms carry a request's context into the work it spawns, pinned.

Tasks, ``asyncio.to_thread`` and Starlette's threadpool copy the context;
bare ``loop.run_in_executor`` copies none, and ``bind_context`` is the
documented helper that carries it there. (The property tests exercise all of
these under concurrency; these pin each behaviour on its own.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    bind_context,
    capture_message,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit


def seen_here() -> tuple[str | None, dict[str, Any]]:
    return get_request_id(), dict(current_business_context())


async def run_request(work: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """One request that sets its context, then records what ``work`` sees."""
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-1")
        seen.append(await work())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"req-1")])
    return seen


async def test_bare_run_in_executor_carries_no_request_context() -> None:
    loop = asyncio.get_running_loop()
    seen = await run_request(lambda: loop.run_in_executor(None, seen_here))
    assert seen == [(None, {})]


async def test_bind_context_carries_the_request_into_run_in_executor() -> None:
    loop = asyncio.get_running_loop()
    seen = await run_request(lambda: loop.run_in_executor(None, bind_context(seen_here)))
    assert seen == [("req-1", {"podcast_id": "p-1"})]


async def test_to_thread_carries_the_request_context() -> None:
    seen = await run_request(lambda: asyncio.to_thread(seen_here))
    assert seen == [("req-1", {"podcast_id": "p-1"})]


async def test_starlette_threadpool_carries_the_request_context() -> None:
    seen = await run_request(lambda: run_in_threadpool(seen_here))
    assert seen == [("req-1", {"podcast_id": "p-1"})]


async def test_task_left_running_after_the_response_keeps_its_request_context() -> None:
    done: asyncio.Future[tuple[str | None, dict[str, Any]]] = (
        asyncio.get_running_loop().create_future()
    )

    async def later() -> None:
        await asyncio.sleep(0)
        done.set_result(seen_here())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_business_context(podcast_id="p-2")
        asyncio.get_running_loop().create_task(later())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"req-2")])
    assert not done.done()  # still running after the response
    assert await done == ("req-2", {"podcast_id": "p-2"})


async def test_event_from_bound_executor_work_carries_the_request(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init()

    def work() -> None:
        capture_message("from a worker thread")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_user("user-7")
        set_business_context(episode_id="e-7")
        await asyncio.get_running_loop().run_in_executor(None, bind_context(work))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", b"req-7")])
    [event] = ingest.wait_for_events(1)
    assert event["tags"]["request_id"] == "req-7"
    assert event["user"] == {"id": "user-7"}
    assert event["contexts"]["business"] == {"episode_id": "e-7"}
