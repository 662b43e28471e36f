"""Cost of the Litestar adapter on a hello-world route, in-process (µs per request).

Compares, in interleaved rounds (so that machine noise hits every variant
alike), a bare Litestar app, the same app with a pass-through middleware (the
price Litestar itself charges once any middleware exists), with
``SentryContextPlugin``, and the bare app wrapped whole in
``SentryContextMiddleware`` (the core alone, for reference). Sentry is
initialised with ``init_sentry`` and a transport that discards; traces are
off; sentry-sdk's own LitestarIntegration is off (it patches Litestar for the
whole process once set up). Prints the median of the rounds::

    .venv/bin/python -m benchmarks.litestar_adapter [--rounds 15] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

from litestar import Litestar, get
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from asgi_sentry_ctx import SentryContextMiddleware, init_sentry
from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin
from benchmarks.inprocess import scope_template


class DiscardTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


@get("/", sync_to_thread=False)
def hello() -> str:
    return "hello"


def noop(app: Any) -> Any:
    """A pass-through middleware: what Litestar itself adds once any middleware exists."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)

    return middleware


def scope() -> dict[str, Any]:
    return scope_template(2)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    pass


async def per_request_us(app: Callable[..., Any], requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        await app(scope(), receive, send)
    return (time.perf_counter() - start) / requests * 1e6


async def main(rounds: int, requests: int) -> None:
    init_sentry(
        "http://public@127.0.0.1:9/1",
        environment="production",
        traces_sample_rate=0.0,
        auto_enabling_integrations=False,
        transport=DiscardTransport,
    )
    bare = Litestar(route_handlers=[hello])
    variants: dict[str, Callable[..., Any]] = {
        "bare Litestar": bare,
        "Litestar + a no-op middleware": Litestar(route_handlers=[hello], middleware=[noop]),
        "Litestar + SentryContextPlugin": Litestar(
            route_handlers=[hello], plugins=[SentryContextPlugin()]
        ),
        # Litestar's TypedDict-based ASGI types do not match the core's mappings.
        "SentryContextMiddleware(bare Litestar)": SentryContextMiddleware(cast(Any, bare)),
    }
    for app in variants.values():  # warm-up: routing caches, lazy imports
        await per_request_us(app, 200)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, app in variants.items():
            results[name].append(await per_request_us(app, requests))
    base = statistics.median(results["bare Litestar"])
    print(f"{rounds} interleaved rounds x {requests} requests; median µs/request")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<40} {median:8.1f}   (+{median - base:5.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests))
