"""Send a batch of requests concurrently: in-process (like a server would) or over HTTP."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tests.leakcheck.interpreter import PlannedFailure
from tests.leakcheck.targets import ASGIApp


@dataclass(frozen=True)
class Outgoing:
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    start_turns: int = 0
    handed_from: int | None = None
    """Start in a copy of an earlier request's context (its index in the batch),
    taken when that request starts its response: what uvicorn on the asyncio
    loop does to the next request on a connection (see FIELD-NOTES.md)."""


class Handover:
    """The context a request leaves behind for the requests started from it."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.context: contextvars.Context | None = None

    def give(self, context: contextvars.Context | None) -> None:
        if not self.ready.is_set():
            self.context = context
            self.ready.set()


@dataclass(frozen=True)
class Outcome:
    status: int | None
    """``None`` when no response started (the exception escaped the app)."""
    request_ids: tuple[str, ...]
    """The values of the response's request-ID header."""
    error: str | None = None
    """The planned exception that escaped the app, as text (in-process only)."""


async def send_in_process(
    app: ASGIApp, request: Outgoing, handover: Handover | None = None
) -> Outcome:
    """One request, as a server sends it: the body, then a disconnect only once
    the response is complete (so a streaming response is not cut short).

    ``handover`` gets a copy of the app's context at the response's start (or
    nothing, if the response never starts)."""
    for _ in range(request.start_turns):
        await asyncio.sleep(0)
    complete = asyncio.Event()
    requested = False
    status: int | None = None
    ids: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            if handover is not None:
                handover.give(contextvars.copy_context())
            status = message["status"]
            ids.extend(
                v.decode("latin-1") for k, v in message.get("headers") or () if k == b"x-request-id"
            )
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            complete.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *request.headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    error = None
    try:
        await app(scope, receive, send)
    except PlannedFailure as exc:
        error = str(exc)
    finally:
        complete.set()
        if handover is not None:
            handover.give(None)
    return Outcome(status, tuple(ids), error)


async def drive_in_process(app: ASGIApp, requests: Sequence[Outgoing]) -> list[Outcome]:
    """Send ``requests`` concurrently; the first runs in the calling task's own context,
    so anything a request fails to reset shows up in the caller afterwards. A
    request ``handed_from`` an earlier one starts once that one's response has
    started, in a copy of its context at that moment."""
    handovers = [Handover() for _ in requests]

    async def handed(index: int, request: Outgoing) -> Outcome:
        assert request.handed_from is not None
        source = handovers[request.handed_from]
        await source.ready.wait()
        if source.context is None:  # the source never responded: nothing handed over
            return await send_in_process(app, request, handovers[index])
        run = send_in_process(app, request, handovers[index])
        return await asyncio.create_task(run, context=source.context.copy())

    def start(index: int, request: Outgoing) -> asyncio.Task[Outcome]:
        if request.handed_from is None:
            return asyncio.create_task(send_in_process(app, request, handovers[index]))
        assert request.handed_from < index, "a request is handed an earlier request's context"
        return asyncio.create_task(handed(index, request))

    assert requests[0].handed_from is None
    others = [start(i, r) for i, r in enumerate(requests) if i > 0]
    try:
        first = await send_in_process(app, requests[0], handovers[0])
    finally:
        rest = await asyncio.gather(*others, return_exceptions=True)
    for outcome in rest:
        if isinstance(outcome, BaseException):
            raise outcome
    return [first, *rest]  # type: ignore[list-item]


async def drive_http(base_url: str, requests: Sequence[Outgoing]) -> list[Outcome]:
    """Send ``requests`` concurrently over as many HTTP connections."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def one(request: Outgoing) -> Outcome:
            response = await client.get(request.path, headers=list(request.headers))
            return Outcome(response.status_code, tuple(response.headers.get_list("x-request-id")))

        return list(await asyncio.gather(*(one(r) for r in requests)))
