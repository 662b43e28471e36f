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
    return count_calls(loop, lambda: run_sequential(app, template, n), n)


def count_calls(loop: asyncio.AbstractEventLoop, run: Runner, n: int) -> float:
    """Python function calls per request of ``run`` (which serves ``n`` requests).

    As ``calls_per_request``, for any runner: the profiler is per thread, so
    the calls of other tasks the requests start (Quart's) are counted too.
    """
    count = 0

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    async def counted() -> None:
        sys.setprofile(profiler)
        try:
            await run()
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


class Connection:
    """One request's ``receive`` and ``send`` as a server hands them over.

    ``receive`` gives the (empty) body once, then waits until the response is
    complete and reports the client's disconnect, as a keep-alive connection
    does: Quart listens on ``receive`` for the whole request, and an answer
    that came at once would make it spin. ``status`` is what the app answered.
    """

    __slots__ = ("_body_sent", "done", "headers", "status")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: Any = ()  # the response's, as sent
        self._body_sent = False

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.done
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = message["headers"]
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.done.set_result(None)  # a second final body would be a server error too


async def run_connections(app: ASGIApp, template: dict[str, Any], n: int) -> None:
    """Serve ``n`` sequential requests, each on its own ``Connection`` and with its own state.

    Raises when any was not answered 200: a set-up whose auth refuses the
    request would otherwise be timed answering 401s.
    """
    loop = asyncio.get_running_loop()
    refused, last = 0, 200
    for _ in range(n):
        connection = Connection(loop)
        await app({**template, "state": {}}, connection.receive, connection.send)
        if connection.status != 200:
            refused += 1
            last = connection.status
    if refused:
        raise RuntimeError(f"{refused} of {n} requests were answered {last}, not 200")


class Lifespan:
    """The app's ASGI lifespan, run as a server runs it: start-up before the first request,
    shut-down at the end (a task left pending would be destroyed noisily at exit)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.supported = False
        self._task: asyncio.Task[None] | None = None
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: asyncio.Queue[Message] = asyncio.Queue()

    async def start(self) -> None:
        """Send ``lifespan.startup``; an app that returns or raises instead has no lifespan."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.get_running_loop().create_task(
            self.app({**scope, "state": {}}, self._messages.get, self._replies.put)
        )
        self.supported = await self._exchange("lifespan.startup")

    async def stop(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's lifespan task to end."""
        if self.supported:
            await self._exchange("lifespan.shutdown")
        if self._task is not None:
            await asyncio.wait({self._task})
            if not self._task.cancelled():
                self._task.exception()  # retrieved: no lifespan support is no error

    async def _exchange(self, event: str) -> bool:
        """Send ``event``; whether the app completed it (raises if it reported a failure)."""
        assert self._task is not None
        await self._messages.put({"type": event})
        reply = asyncio.ensure_future(self._replies.get())
        await asyncio.wait({reply, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            return False
        message = reply.result()
        if message["type"] == f"{event}.failed":
            raise RuntimeError(f"{event} failed: {message.get('message', '')}")
        return True
