"""One request ID across two real services: A handles a request and calls B, B fails.

Both services run under uvicorn on loopback with the middleware, in this
process, and report to one loopback Sentry ingest set up by ``init_sentry``
(whose httpx integration, and sentry-sdk's aiohttp one, send ``sentry-trace``
and ``baggage``; B's middleware continues them). A third loopback server, not
a target, records what a call to it carries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from typing import Any

import aiohttp
import httpx
import pytest
import sentry_sdk

from asgi_sentry_ctx import OutboundPropagation, SentryContextMiddleware
from asgi_sentry_ctx.adapters import aiohttp as aiohttp_adapter
from asgi_sentry_ctx.adapters import httpx as httpx_adapter
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import lifespan
from tests.conftest import ProductionInit
from tests.recorder import recording_server
from tests.servers import serve

Call = Callable[[OutboundPropagation, str], Awaitable[int]]


async def service_b(scope: Any, receive: Any, send: Any) -> None:
    """B: every request fails."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    raise RuntimeError("B failed")


def service_a(call: Call, outbound: OutboundPropagation, downstream: str) -> Any:
    """A: calls ``downstream`` with ``call``; a failed answer is reported, and A answers 502."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        status = await call(outbound, downstream)
        if status >= 500:
            sentry_sdk.capture_message(f"downstream answered {status}", level="error")
        answer = 502 if status >= 500 else 200
        await send({"type": "http.response.start", "status": answer, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def call_with_httpx(outbound: OutboundPropagation, url: str) -> int:
    """Per client: an httpx event hook."""
    hook = httpx_adapter.async_request_hook(outbound)
    async with httpx.AsyncClient(event_hooks={"request": [hook]}) as client:
        return (await client.get(url)).status_code


async def call_with_aiohttp(outbound: OutboundPropagation, url: str) -> int:
    """Process-wide: the session is a plain one (``install`` is in force)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


@pytest.fixture
def aiohttp_installed() -> Iterator[None]:
    aiohttp_adapter.install(OutboundPropagation(["127.0.0.1"]))
    yield
    aiohttp_adapter.uninstall()


@pytest.fixture
def services(production: ProductionInit) -> Iterator[Callable[[Call, str], str]]:
    """``start(call, target)``: B serving, A serving and calling B with ``call``
    (``target`` allowed), Sentry reporting to the ingest; returns A's URL."""
    # Unsampled: the trace goes out all the same (the middleware's unsampled span).
    production(traces_sample_rate=0.0, transport_queue_size=1000)
    with ExitStack() as stack:
        b_url = stack.enter_context(serve(SentryContextMiddleware(service_b)))

        def start(call: Call, target: str) -> str:
            app = service_a(call, OutboundPropagation([target]), b_url)
            url: str = stack.enter_context(serve(SentryContextMiddleware(app)))
            return url

        yield start


def a_and_b_events(ingest: SentryIngest) -> tuple[dict[str, Any], dict[str, Any]]:
    """A's event (its report of B's 500) and B's (the exception), once both arrived."""
    events = ingest.wait_for_events(2)
    sentry_sdk.flush(5)
    assert len(ingest.events) == 2
    [a] = [event for event in events if "exception" not in event]
    [b] = [event for event in events if "exception" in event]
    assert b["exception"]["values"][0]["value"] == "B failed"
    return a, b


def assert_linked(a_url: str, ingest: SentryIngest) -> None:
    """One request to A: its response header, A's event and B's carry one
    request ID, and B's event is in A's trace."""
    response = httpx.get(a_url)
    assert response.status_code == 502
    request_id = response.headers["x-request-id"]
    a, b = a_and_b_events(ingest)
    assert a["tags"]["request_id"] == request_id
    assert b["tags"]["request_id"] == request_id
    assert b["contexts"]["trace"]["trace_id"] == a["contexts"]["trace"]["trace_id"]


def test_one_request_id_and_trace_link_a_and_b_over_httpx(
    services: Callable[[Call, str], str], ingest: SentryIngest
) -> None:
    """A calling B with an httpx client (per-client hook): one request ID, one trace."""
    assert_linked(services(call_with_httpx, "127.0.0.1"), ingest)


@pytest.mark.usefixtures("aiohttp_installed")
def test_one_request_id_and_trace_link_a_and_b_over_aiohttp(
    services: Callable[[Call, str], str], ingest: SentryIngest
) -> None:
    """A calling B with a plain aiohttp session (process-wide install): one ID, one trace."""
    assert_linked(services(call_with_aiohttp, "127.0.0.1"), ingest)


def test_a_host_outside_the_targets_gets_no_request_id(
    production: ProductionInit,
) -> None:
    """A call from A to a server that is not a target carries no request ID."""
    production(traces_sample_rate=0.0)
    with recording_server() as third:
        outbound = OutboundPropagation(["billing.internal"])
        app = SentryContextMiddleware(service_a(call_with_httpx, outbound, third.url))
        with serve(app) as a_url:
            response = httpx.get(a_url)
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    [received] = third.received
    assert "x-request-id" not in received


def test_a_named_target_gets_the_request_id_from_a_real_service(
    production: ProductionInit,
) -> None:
    """The same call to a named target carries A's request ID (the control for the test above)."""
    production(traces_sample_rate=0.0)
    with recording_server() as third:
        outbound = OutboundPropagation([third.host_port])
        app = SentryContextMiddleware(service_a(call_with_httpx, outbound, third.url))
        with serve(app) as a_url:
            response = httpx.get(a_url, headers={"X-Request-ID": "from-the-edge"})
    assert response.headers["x-request-id"] == "from-the-edge"
    [received] = third.received
    assert received["x-request-id"] == "from-the-edge"
