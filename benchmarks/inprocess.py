"""A fake ASGI server loop: time, count calls and count allocations per request, in-process.

The "server" builds a fresh scope per request (a copy of a template, as cheap
as a server could make it), answers ``receive`` with an empty body and
swallows what is sent. Sequentially, requests are awaited one after another.
With requests in flight, each request runs in its own task (as uvicorn runs
them) and yields once to the event loop when its response starts, so that
all of a window's requests are inside the middleware at the same time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from benchmarks.apps import ASGIApp, Message

_BASE_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"connection", b"keep-alive"),
    (b"cache-control", b"no-cache"),
    (b"x-forwarded-for", b"10.0.0.1"),
]


def scope_template(header_count: int = 8) -> dict[str, Any]:
    """The scope of ``GET /`` with ``header_count`` request headers (8 is a typical browser's)."""
    headers = list(_BASE_HEADERS[:header_count])
    headers += [(f"x-extra-{i}".encode(), b"value") for i in range(header_count - len(headers))]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


async def _yielding_send(message: Message) -> None:
    if message["type"] == "http.response.start":
        await asyncio.sleep(0)  # a transport write: let the other requests in flight run


async def run_sequential(app: ASGIApp, template: dict[str, Any], n: int) -> None:
    for _ in range(n):
        await app(template.copy(), _receive, _send)


async def run_in_flight(app: ASGIApp, template: dict[str, Any], n: int, in_flight: int) -> None:
    loop = asyncio.get_running_loop()
    done = 0
    while done < n:
        window = min(in_flight, n - done)
        tasks = [
            loop.create_task(app(template.copy(), _receive, _yielding_send)) for _ in range(window)
        ]
        for task in tasks:
            await task
        done += window


Runner = Callable[[], Coroutine[Any, Any, None]]


def time_per_request(
    loop: asyncio.AbstractEventLoop, run: Runner, n: int, after: Callable[[], None] | None = None
) -> tuple[float, float]:
    """CPU and wall-clock microseconds per request of ``run`` (which serves ``n`` requests).

    CPU time is the process's (every thread: the event row's transport thread
    counts too). It is the figure reported: on a shared machine, time spent
    waiting for a core inflates wall-clock time but not CPU time. GC stays on,
    as in production. ``after`` runs inside the measured span (the event row
    flushes its transport there).
    """
    gc.collect()
    wall = time.perf_counter_ns()
    cpu = time.process_time_ns()
    loop.run_until_complete(run())
    if after is not None:
        after()
    cpu = time.process_time_ns() - cpu
    wall = time.perf_counter_ns() - wall
    return cpu / n / 1000, wall / n / 1000


def calls_per_request(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, template: dict[str, Any], n: int
) -> float:
    """Python function calls per sequential request: ``sys.setprofile`` 'call' events.

    C functions raise 'c_call' events, which are not counted. The profiler is
    installed inside the coroutine, so the event loop's own calls are not counted.
    """
    count = 0

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    async def counted() -> None:
        sys.setprofile(profiler)
        try:
            await run_sequential(app, template, n)
        finally:
            sys.setprofile(None)

    loop.run_until_complete(counted())
    # The setprofile(None) call itself raises no 'call' event: nothing to subtract.
    return count / n


def memory_held_per_request(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, template: dict[str, Any], in_flight: int
) -> tuple[float, float]:
    """Memory blocks and bytes each request holds while in flight, measured with tracemalloc.

    ``in_flight`` requests are parked where their response starts (all of
    them inside every middleware layer); the traced memory is compared with
    the state before they started.
    """
    arrived = 0
    all_parked = asyncio.Event()
    gate = asyncio.Event()

    async def parking_send(message: Message) -> None:
        nonlocal arrived
        if message["type"] == "http.response.start":
            arrived += 1
            if arrived == in_flight:
                all_parked.set()
            await gate.wait()

    async def measure() -> tuple[int, int]:
        gc.collect()
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        before = tracemalloc.take_snapshot().filter_traces(ignore)
        tasks = [
            asyncio.create_task(app(template.copy(), _receive, parking_send))
            for _ in range(in_flight)
        ]
        await all_parked.wait()
        parked = tracemalloc.take_snapshot().filter_traces(ignore)
        gate.set()
        for task in tasks:
            await task
        diff = parked.compare_to(before, "filename")
        return sum(s.count_diff for s in diff), sum(s.size_diff for s in diff)

    tracemalloc.start(1)
    try:
        blocks, size = loop.run_until_complete(measure())
    finally:
        tracemalloc.stop()
    return blocks / in_flight, size / in_flight
