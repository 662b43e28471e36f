"""Send a batch of requests concurrently: in-process (like a server would) or over HTTP."""

from __future__ import annotations

import asyncio
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


@dataclass(frozen=True)
class Outcome:
    status: int | None
    """``None`` when no response started (the exception escaped the app)."""
    request_ids: tuple[str, ...]
    """The values of the response's request-ID header."""
    error: str | None = None
    """The planned exception that escaped the app, as text (in-process only)."""


async def send_in_process(app: ASGIApp, request: Outgoing) -> Outcome:
    """One request, as a server sends it: the body, then a disconnect only once
    the response is complete (so a streaming response is not cut short)."""
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
    return Outcome(status, tuple(ids), error)


async def drive_in_process(app: ASGIApp, requests: Sequence[Outgoing]) -> list[Outcome]:
    """Send ``requests`` concurrently; the first runs in the calling task's own context,
    so anything a request fails to reset shows up in the caller afterwards."""
    others = [asyncio.create_task(send_in_process(app, r)) for r in requests[1:]]
    try:
        first = await send_in_process(app, requests[0])
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
