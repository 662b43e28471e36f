"""One configuration's worker process: ``python -m benchmarks.worker CONFIG``.

``CONFIG`` is a configuration of ``benchmarks.configs`` or a documented set-up
(``fastapi/ours``, see ``benchmarks.documented``). It sets Sentry up as the
configuration says, then answers JSON requests, one
per line on stdin, with one JSON line on stdout. Keeping every configuration
in its own process keeps their Sentry clients and the SDK's monkeypatches
apart; between requests a worker sleeps on its pipe, so it never competes
with the one being measured. ``WorkerProcess`` is the driving side of the pipe.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import suppress
from typing import Any

import sentry_sdk

from benchmarks import documented
from benchmarks.apps import Workload, build_app
from benchmarks.configs import BY_NAME, Config, DiscardTransport, init_sentry_for
from benchmarks.inprocess import (
    Connection,
    Lifespan,
    Runner,
    calls_per_request,
    count_calls,
    memory_held_per_request,
    run_connections,
    run_in_flight,
    run_sequential,
    scope_template,
    time_per_request,
)

WARM_UP = 200


class WorkerProcess:
    """The driving side of a worker: the process started for configuration ``name``, pinned
    to ``core`` once it is ready, asked one JSON line at a time."""

    def __init__(self, name: str, core: int, ingest_dsn: str | None = None) -> None:
        self.name = name
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if ingest_dsn is not None:
            env["BENCH_INGEST_DSN"] = ingest_dsn
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.core = core

    def wait_ready(self) -> None:
        """Wait for the worker's start-up, then pin it: imports and Sentry's set-up (a second
        or two with the SDK's auto-enabled integrations) run on any core, the timing on one."""
        self._read()
        os.sched_setaffinity(self.process.pid, {self.core})

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.name}: {reply['error']}")
        return reply

    def close(self) -> None:
        with suppress(BrokenPipeError, RuntimeError, ValueError):
            self.ask(op="quit")
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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

    def close(self) -> None:
        """Nothing to shut down: the raw apps have no lifespan, the others never ran one."""


class DocumentedWorker:
    """A documented set-up's worker: one app, authenticated ``GET /me`` requests, sequential.

    Sentry is set up and the app built once, at start, as the docs do it; the
    app's lifespan start-up runs as a server would run it (Quart's and
    Litestar's hooks need it).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        built = documented.start(name)
        self.app = built.app
        self.template = documented.scope_template(built, scope_template())
        self.lifespan = Lifespan(self.app)
        self.loop.run_until_complete(self.lifespan.start())
        # The first requests build lazy stacks and fill caches; a refused one fails here.
        self.loop.run_until_complete(run_connections(self.app, self.template, WARM_UP))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "describe":
            return self.describe()
        op, n = request["op"], request["n"]
        app, template = self.app, self.template
        if op == "time":
            self.loop.run_until_complete(run_connections(app, template, min(n, 50)))
            cpu, wall = time_per_request(self.loop, lambda: run_connections(app, template, n), n)
            return {"us": cpu, "wall_us": wall}
        if op == "calls":
            return {"calls": count_calls(self.loop, lambda: run_connections(app, template, n), n)}
        raise ValueError(f"unknown op {op!r}")

    def describe(self) -> dict[str, Any]:
        """What this set-up turned out to be: Sentry's integrations and sample rate, the
        response's headers, whether the app ran a lifespan. Shows in the report's JSON that
        each row is what its label says."""
        connection = Connection(self.loop)
        request = {**self.template, "state": {}}
        self.loop.run_until_complete(self.app(request, connection.receive, connection.send))
        client, headers = sentry_sdk.get_client(), connection.headers
        return {
            "status": connection.status,
            "response_headers": sorted(bytes(k).decode("latin-1").lower() for k, _ in headers),
            "lifespan": self.lifespan.supported,
            "sentry_active": client.is_active(),
            "integrations": sorted(client.integrations) if client.is_active() else [],
            "traces_sample_rate": client.options.get("traces_sample_rate"),
        }

    def close(self) -> None:
        """Shut the app's lifespan down, as a server does when it stops."""
        self.loop.run_until_complete(self.lifespan.stop())


def _flush() -> None:
    sentry_sdk.flush(timeout=30)


def _worker(name: str) -> Worker | DocumentedWorker:
    """The worker for ``name``, Sentry set up in this process as it says."""
    if documented.is_setup_name(name):
        return DocumentedWorker(name)
    config = BY_NAME[name]
    init_sentry_for(config, os.environ.get("BENCH_INGEST_DSN"))
    return Worker(config)


def main() -> None:
    name = sys.argv[1]
    # Replies go to the real stdout; anything a library prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr
    try:
        worker = _worker(name)
    except Exception as exc:
        replies.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return
    replies.write(json.dumps({"ready": name}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        try:
            reply = worker.handle(request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
    worker.close()
    sentry_sdk.flush(timeout=5)


if __name__ == "__main__":
    main()
