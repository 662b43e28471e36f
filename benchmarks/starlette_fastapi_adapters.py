"""Overhead of the Starlette and FastAPI adapters on a hello-world route, in-process.

For each framework, the same app bare and with ``install(app)``, driven by
raw ASGI calls (no server, no network): µs per request, the median of
interleaved rounds, so that a slow moment of the machine hits every variant
alike. Sentry is initialised with a transport that discards everything and
tracing off; sentry-sdk's own Starlette/FastAPI integration is off unless
``--sdk-integration`` (it patches Starlette process-wide, so it is a separate run).

    .venv/bin/python -m benchmarks.starlette_fastapi_adapters [--rounds 31] [--batch 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import sentry_sdk
from fastapi import FastAPI
from sentry_sdk.transport import Transport
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.adapters import fastapi as fastapi_adapter
from asgi_sentry_ctx.adapters import starlette as starlette_adapter
from benchmarks.inprocess import scope_template

ASGIApp = Callable[..., Any]


class DiscardTransport(Transport):
    def capture_envelope(self, envelope: Any) -> None:
        pass


def starlette_app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    return Starlette(routes=[Route("/", hello)])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"message": "Hello, world!"}

    return app


async def raw_hello(scope: Any, receive: Any, send: Any) -> None:
    """The same route as a bare ASGI app: the cost of the core middleware alone, for comparison."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


SCOPE: dict[str, Any] = scope_template(2)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


async def batch(app: ASGIApp, count: int, clock: Callable[[], int]) -> float:
    """µs per request over ``count`` sequential requests."""
    start = clock()
    for _ in range(count):
        await app(dict(SCOPE), receive, send)
    return (clock() - start) / count / 1000


async def measure(
    variants: dict[str, ASGIApp], rounds: int, size: int, clock: Callable[[], int]
) -> dict[str, list[float]]:
    for app in variants.values():
        await batch(app, 200, clock)  # warm up: build the middleware stack, fill caches
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            results[name].append(await batch(variants[name], size, clock))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--sdk-integration", action="store_true")
    parser.add_argument(
        "--wall-clock",
        action="store_true",
        help="time with the wall clock instead of this thread's CPU time "
        "(CPU time is steadier on a machine that is busy with other work)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=DiscardTransport(),
        auto_enabling_integrations=args.sdk_integration,
    )
    variants: dict[str, ASGIApp] = {
        "raw asgi, bare": raw_hello,
        "raw asgi, install()": SentryContextMiddleware(raw_hello),
        "starlette, bare": starlette_app(),
        "starlette, install()": starlette_adapter.install(starlette_app()),
        "fastapi, bare": fastapi_app(),
        "fastapi, install()": fastapi_adapter.install(fastapi_app()),
    }
    clock = time.perf_counter_ns if args.wall_clock else time.thread_time_ns
    results = asyncio.run(measure(variants, args.rounds, args.batch, clock))
    medians = {name: statistics.median(values) for name, values in results.items()}
    if args.json:
        print(json.dumps({"sdk_integration": args.sdk_integration, "us_per_request": medians}))
        return
    print(
        f"sdk integration {'on' if args.sdk_integration else 'off'}; "
        f"{args.rounds} rounds x {args.batch} requests; median µs/request "
        f"({'wall clock' if args.wall_clock else 'thread CPU time'})"
    )
    for framework in ("raw asgi", "starlette", "fastapi"):
        bare = medians[f"{framework}, bare"]
        installed = medians[f"{framework}, install()"]
        print(
            f"  {framework:<9} bare {bare:7.2f}   with adapter {installed:7.2f}   "
            f"overhead {installed - bare:+6.2f} µs ({(installed / bare - 1) * 100:+.0f}%)"
        )


if __name__ == "__main__":
    main()
