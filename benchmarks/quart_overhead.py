"""What the Quart adapter costs per request: a hello-world route, in-process, µs/request.

Run: ``.venv/bin/python -m benchmarks.quart_overhead [--requests N] [--rounds R]``

Each variant is a fresh Quart app with one ``GET /`` route, driven through its
ASGI interface the way a server would (no sockets). Sentry is initialised with
a transport that discards everything and tracing off; the variants are timed
in interleaved rounds and the median round is reported, so that a slow moment
of the machine hurts every variant alike.

Phase 1 has sentry-sdk's framework integrations off: bare app vs ``init_app``.
Phase 2, in a child process (the SDK's QuartIntegration patches Quart for the
whole process once enabled), has the SDK's auto-enabled QuartIntegration on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import sentry_sdk
from quart import Quart
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.adapters.quart import init_app
from benchmarks.inprocess import scope_template


class DiscardTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        pass


def hello_app(wrap: str = "") -> Quart:
    app = Quart(__name__)

    @app.get("/")
    async def hello() -> str:
        return "hello"

    if wrap == "adapter":
        init_app(app)
    elif wrap == "middleware":  # the core alone: what the adapter's glue adds is the difference
        middleware = SentryContextMiddleware(cast("Any", app.asgi_app))
        app.asgi_app = cast("Any", middleware)  # type: ignore[method-assign]
    return app


_SCOPE: dict[str, Any] = scope_template(2)


async def one_request(app: Any) -> None:
    done = asyncio.Event()
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # a client stays connected until the response is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(dict(_SCOPE, headers=list(_SCOPE["headers"])), receive, send)


async def measure(apps: dict[str, Any], requests: int, rounds: int) -> dict[str, float]:
    for app in apps.values():
        await app.startup()
        for _ in range(200):  # warm-up
            await one_request(app)
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            start = time.perf_counter()
            for _ in range(requests):
                await one_request(app)
            samples[name].append((time.perf_counter() - start) / requests * 1e6)
    for app in apps.values():
        await app.shutdown()
    return {name: statistics.median(values) for name, values in samples.items()}


def init_discarding_sentry(sdk_integration: bool) -> None:
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=DiscardTransport,
        traces_sample_rate=None,
        auto_enabling_integrations=sdk_integration,
    )


def run_phase(sdk_integration: bool, requests: int, rounds: int) -> dict[str, float]:
    init_discarding_sentry(sdk_integration)
    prefix = "sdk QuartIntegration" if sdk_integration else "bare Quart"
    apps: dict[str, Callable[..., Any]] = {
        prefix: hello_app(),
        f"{prefix} + SentryContextMiddleware": hello_app("middleware"),
        f"{prefix} + init_app": hello_app("adapter"),
    }
    return asyncio.run(measure(apps, requests, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--phase", choices=["own", "sdk"], help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.phase:
        result = run_phase(args.phase == "sdk", args.requests, args.rounds)
        print(json.dumps(result))
        return
    results = run_phase(False, args.requests, args.rounds)
    command = [sys.executable, "-m", "benchmarks.quart_overhead", "--phase", "sdk"]
    command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
    child = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
    )
    results.update(json.loads(child.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'variant':52} {'µs/request':>10}  (median of {args.rounds} rounds)")
    for name, value in results.items():
        print(f"{name:52} {value:10.1f}")
    for base in ("bare Quart", "sdk QuartIntegration"):
        added = results[f"{base} + init_app"] - results[base]
        print(f"init_app adds {added:.1f} µs/request over {base}")


if __name__ == "__main__":
    main()
