"""What outbound propagation costs: per outgoing httpx call, and per request with no call.

Run: ``.venv/bin/python -m benchmarks.outbound [--calls N] [--requests N] [--rounds R] [--json]``

1. **Per outgoing call.** Inside one request served by the middleware, an
   ``httpx.AsyncClient`` whose transport answers in-process
   (``httpx.MockTransport``: no sockets, so the figure is the client's own
   work plus ours) makes ``--calls`` GETs to a target host. Variants: no
   propagation; the per-client event hook; the process-wide ``install``; and
   the hook with a host that is not a target. The cost of propagation is a
   variant's µs per call less the baseline's.
2. **Per request, no outgoing call.** The middleware around a hello-world ASGI
   app, driven in-process: nothing configured vs ``OutboundPropagation``
   installed process-wide for httpx and aiohttp. Both µs (CPU) and Python
   function calls per request: propagation does no per-request work, so the
   calls must be equal.

sentry-sdk is initialised with a transport that discards everything and
tracing off (its httpx integration on, as ``init_sentry`` sets it). Variants
run in interleaved rounds; the median round is reported, so that a slow
moment of the shared machine hurts every variant alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import httpx
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from asgi_sentry_ctx import OutboundPropagation, SentryContextMiddleware
from asgi_sentry_ctx.adapters import aiohttp as aiohttp_adapter
from asgi_sentry_ctx.adapters import httpx as httpx_adapter
from benchmarks.inprocess import calls_per_request, run_sequential, scope_template

TARGET = "http://billing.internal/charge"
OUTBOUND = OutboundPropagation(["billing.internal"], business_headers={"shop": "X-Shop"})
ELSEWHERE = OutboundPropagation(["search.internal"])


class DiscardTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


def client_for(variant: str) -> httpx.AsyncClient:
    hooks: list[Callable[[httpx.Request], Awaitable[None]]] = []
    if variant == "hook":
        hooks.append(httpx_adapter.async_request_hook(OUTBOUND))
    elif variant == "hook, host not a target":
        hooks.append(httpx_adapter.async_request_hook(ELSEWHERE))
    return httpx.AsyncClient(transport=httpx.MockTransport(_answer), event_hooks={"request": hooks})


async def time_calls(variant: str, calls: int) -> float:
    """µs per call (CPU) of ``calls`` GETs made inside one request, with ``variant``."""
    spent: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with client_for(variant) as client:
            for _ in range(50):  # warm-up: connection-free, but caches and the first hook
                await client.get(TARGET)
            start = time.process_time_ns()
            for _ in range(calls):
                await client.get(TARGET)
            spent.append((time.process_time_ns() - start) / calls / 1000)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    if variant == "install":
        httpx_adapter.install(OUTBOUND)
    try:
        await run_sequential(SentryContextMiddleware(app), scope_template(), 1)
    finally:
        httpx_adapter.uninstall()
    return spent[0]


async def count_calls(variant: str, calls: int) -> float:
    """Python function calls per outgoing call with ``variant``: a figure that,
    unlike time, the other processes of a shared machine do not move."""
    counted = 0

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal counted
        if event == "call":
            counted += 1

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async with client_for(variant) as client:
            await client.get(TARGET)  # warm-up
            sys.setprofile(profiler)
            try:
                for _ in range(calls):
                    await client.get(TARGET)
            finally:
                sys.setprofile(None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    if variant == "install":
        httpx_adapter.install(OUTBOUND)
    try:
        await run_sequential(SentryContextMiddleware(app), scope_template(), 1)
    finally:
        httpx_adapter.uninstall()
    return counted / calls


async def time_propagation(calls: int) -> dict[str, float]:
    """µs (CPU) per ``_propagate`` alone, on fresh requests inside one request:
    the adapter's own work, without the client's around it."""
    figures: dict[str, float] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for name, outbound in (("target", OUTBOUND), ("not a target", ELSEWHERE)):
            requests = [httpx.Request("GET", TARGET) for _ in range(calls)]
            start = time.process_time_ns()
            for request in requests:
                httpx_adapter._propagate(outbound, request)
            figures[name] = (time.process_time_ns() - start) / calls / 1000
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await run_sequential(SentryContextMiddleware(app), scope_template(), 1)
    return figures


VARIANTS = ["no propagation", "hook", "install", "hook, host not a target"]


def per_call(calls: int, rounds: int) -> dict[str, float]:
    """µs (CPU) per outgoing call of each variant, and of the adapter alone."""
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name in VARIANTS:
            samples[name].append(asyncio.run(time_calls(name, calls)))
    figures = {name: statistics.median(values) for name, values in samples.items()}
    alone = [asyncio.run(time_propagation(calls)) for _ in range(rounds)]
    for name in ("target", "not a target"):
        figures[f"adapter alone, {name}"] = statistics.median(run[name] for run in alone)
    return figures


def calls_per_call() -> dict[str, float]:
    return {name: asyncio.run(count_calls(name, 200)) for name in VARIANTS}


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def per_request(requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """µs (CPU) and Python calls per request, propagation off and installed."""
    app = SentryContextMiddleware(hello)
    template = scope_template()
    loop = asyncio.new_event_loop()
    samples: dict[str, list[float]] = {"off": [], "installed": []}
    calls: dict[str, float] = {}
    try:
        loop.run_until_complete(run_sequential(app, template, 500))  # warm-up
        for _ in range(rounds):
            for name in samples:
                configure(name)
                start = time.process_time_ns()
                loop.run_until_complete(run_sequential(app, template, requests))
                samples[name].append((time.process_time_ns() - start) / requests / 1000)
        for name in samples:
            configure(name)
            calls[name] = calls_per_request(loop, app, template, 200)
    finally:
        configure("off")
        loop.close()
    return {
        name: {"us_per_request": statistics.median(values), "calls_per_request": calls[name]}
        for name, values in samples.items()
    }


def configure(variant: str) -> None:
    if variant == "installed":
        httpx_adapter.install(OUTBOUND)
        aiohttp_adapter.install(OUTBOUND)
    else:
        httpx_adapter.uninstall()
        aiohttp_adapter.uninstall()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="outgoing calls per round")
    parser.add_argument("--requests", type=int, default=5000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1", transport=DiscardTransport, traces_sample_rate=None
    )
    calls = per_call(args.calls, args.rounds)
    counts = calls_per_call()
    requests = per_request(args.requests, args.rounds)
    if args.json:
        report = {"per_call_us": calls, "python_calls_per_call": counts, "per_request": requests}
        print(json.dumps(report, indent=2))
        return
    base, base_count = calls["no propagation"], counts["no propagation"]
    print(f"Per outgoing httpx call (MockTransport, median of {args.rounds} rounds, CPU µs)")
    for name, value in calls.items():
        if name in counts:
            print(
                f"  {name:<30} {value:8.2f} µs/call ({value - base:+.2f})  "
                f"{counts[name]:6.1f} Python calls ({counts[name] - base_count:+.1f})"
            )
        else:
            print(f"  {name:<30} {value:8.2f} µs/call")
    print(f"Per request, no outgoing call (median of {args.rounds} rounds)")
    for name, figures in requests.items():
        print(
            f"  propagation {name:<14} {figures['us_per_request']:8.2f} µs/request  "
            f"{figures['calls_per_request']:6.1f} calls/request"
        )


if __name__ == "__main__":
    main()
