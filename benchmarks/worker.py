"""One configuration's worker process: ``python -m benchmarks.worker CONFIG``.

It sets Sentry up as the configuration says, then answers JSON requests, one
per line on stdin, with one JSON line on stdout. Keeping every configuration
in its own process keeps their Sentry clients and the SDK's monkeypatches
apart; between requests a worker sleeps on its pipe, so it never competes
with the one being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import sentry_sdk

from benchmarks.apps import Workload, build_app
from benchmarks.configs import BY_NAME, Config, DiscardTransport, init_sentry_for
from benchmarks.inprocess import (
    Runner,
    calls_per_request,
    memory_held_per_request,
    run_in_flight,
    run_sequential,
    scope_template,
    time_per_request,
)

WARM_UP = 200


class Worker:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.apps: dict[tuple[str, Workload], Any] = {}

    def app(self, request: dict[str, Any]) -> Any:
        kind = request.get("kind", "raw")
        workload = Workload(
            business_fields=request.get("business_fields", 0),
            breadcrumbs=request.get("breadcrumbs", 0),
            capture=self.config.workload.capture,
        )
        key = (kind, workload)
        if key not in self.apps:
            app = self.config.wrap(kind, build_app(kind, workload))
            # The first requests build lazy stacks (Starlette) and fill caches.
            self.loop.run_until_complete(run_sequential(app, scope_template(), WARM_UP))
            self.apps[key] = app
        return self.apps[key]

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        app = self.app(request)
        template = scope_template(request.get("headers", 8))
        if op == "time":
            n = request["n"]
            in_flight = request.get("in_flight", 1)

            def run(count: int) -> Runner:
                if in_flight == 1:
                    return lambda: run_sequential(app, template, count)
                return lambda: run_in_flight(app, template, count, in_flight)

            self.loop.run_until_complete(run(min(n, max(50, in_flight)))())
            after = _flush if self.config.send_events else None
            cpu, wall = time_per_request(self.loop, run(n), n, after)
            return {"us": cpu, "wall_us": wall}
        if op == "calls":
            return {"calls": calls_per_request(self.loop, app, template, request["n"])}
        if op == "memory":
            blocks, size = memory_held_per_request(
                self.loop, app, template, request.get("in_flight", 100)
            )
            return {"blocks": blocks, "bytes": size}
        if op == "events":
            return {"discarded": DiscardTransport.envelopes}
        raise ValueError(f"unknown op {op!r}")


def _flush() -> None:
    sentry_sdk.flush(timeout=30)


def main() -> None:
    config = BY_NAME[sys.argv[1]]
    init_sentry_for(config, os.environ.get("BENCH_INGEST_DSN"))
    # Replies go to the real stdout; anything a library prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr
    worker = Worker(config)
    replies.write(json.dumps({"ready": config.name}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        try:
            reply = worker.handle(request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
    sentry_sdk.flush(timeout=5)


if __name__ == "__main__":
    main()
