"""One target, set up once and fed batch after batch: run, wait, check, clean."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from asgi_sentry_ctx.testing import SentryIngest
from tests.leakcheck import checks
from tests.leakcheck.drivers import Outcome, Outgoing, drive_http, drive_in_process
from tests.leakcheck.interpreter import RequestRun
from tests.leakcheck.model import RequestModel, model
from tests.leakcheck.plan import Batch, Capture, IncomingId, Names, RequestPlan
from tests.leakcheck.targets import ASGIApp, Harness, Target
from tests.servers import serve

_nonces = itertools.count(1)

RESULTS: list[str] = []
"""One line per rig closed: the target, examples and requests run (printed by conftest)."""

# After every batch, one more request: it must start clean.
CLEAN_PLAN = RequestPlan(IncomingId("absent"), False, 0, (Capture(1),))


@contextmanager
def sentry_to(ingest: SentryIngest, *, max_breadcrumbs: int = 1000) -> Iterator[None]:
    """The real SDK and transport, sending to ``ingest``; errors logged become events."""
    sentry_sdk.init(
        dsn=ingest.dsn,
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        transport_queue_size=100_000,  # a burst of events is never dropped
        max_breadcrumbs=max_breadcrumbs,
    )
    try:
        yield
    finally:
        sentry_sdk.flush(10)
        sentry_sdk.get_client().close()
        sentry_sdk.init()


class Rig:
    """``target``'s app, an event loop that lives across examples, and the ingest."""

    def __init__(self, target: Target, ingest: SentryIngest, *, over_http: bool = False) -> None:
        self.target = target
        self.ingest = ingest
        self.harness = Harness()
        self.app = target.build(self.harness)
        self.runner = asyncio.Runner()
        self.url: str | None = None
        self.examples = 0
        self.requests = 0
        self._stack = ExitStack()
        # Each batch is driven from a copy of this context, in its own Sentry
        # isolation scope: a leak fails the batch that caused it, and only that
        # one, so Hypothesis shrinks towards the cause, not towards any batch.
        self._pristine = contextvars.copy_context()
        if over_http:
            self.url = self._stack.enter_context(serve(_tracked(self.app, self.harness)))
        else:
            self.runner.run(self._lifespan_start())

    def close(self, label: str) -> None:
        RESULTS.append(
            f"leakcheck {label} {self.target.name}: {self.examples} examples, "
            f"{self.requests} requests"
        )
        try:
            if self.url is None:
                self.runner.run(self._lifespan_stop())
            self._stack.close()
        finally:
            self.runner.close()

    def check(self, batch: Batch, handed_from: Sequence[int | None] = ()) -> None:
        """Run ``batch`` and assert everything the property promises.

        ``handed_from`` (in-process only): for each request, ``None`` or the
        earlier request whose context the server hands it (see ``Outgoing``).
        """
        assert not handed_from or (self.url is None and len(handed_from) == len(batch))
        nonce = next(_nonces)
        plans = [*batch, CLEAN_PLAN]
        names = [Names(nonce, i) for i in range(len(plans))]
        models = [model(p, n, self.target.traits) for p, n in zip(plans, names, strict=True)]
        runs = [
            RequestRun(p, n, self.harness.tracker, self.target.pool)
            for p, n in zip(plans, names, strict=True)
        ]
        self.harness.runs = {n.path: r for n, r in zip(names, runs, strict=True)}
        try:
            outcomes = self.runner.run(
                self._isolated(runs, handed_from), context=self._pristine.copy()
            )
            checks.check_outcomes(models, outcomes)
            events = self._received(names[-1])
            self._check(models, runs, outcomes, events)
            self.examples += 1
            self.requests += len(plans)
        finally:
            # Also after a failure: nothing of this batch may reach the next one.
            try:
                self.runner.run(self.harness.tracker.settle())
            finally:
                sentry_sdk.flush(30)
                self.harness.runs = {}
                self.ingest.clear()

    async def _isolated(
        self, runs: list[RequestRun], handed_from: Sequence[int | None]
    ) -> list[Outcome]:
        with sentry_sdk.isolation_scope():
            return await self._send(runs, handed_from)

    async def _send(
        self, runs: list[RequestRun], handed_from: Sequence[int | None]
    ) -> list[Outcome]:
        before = checks.scope_fingerprint()
        tasks_before = asyncio.all_tasks()
        batch, clean = runs[:-1], runs[-1]
        outgoing = [
            _outgoing(run, source)
            for run, source in zip(batch, handed_from or [None] * len(batch), strict=True)
        ]
        if self.url is None:
            outcomes = await drive_in_process(self.app, outgoing)
        else:
            outcomes = await drive_http(self.url, outgoing)
        await self.harness.tracker.settle()
        assert not self.harness.tracker.errors, self.harness.tracker.errors
        # Everything of the batch has finished: the next request must start clean.
        if self.url is None:
            [last] = await drive_in_process(self.app, [_outgoing(clean)])
        else:
            [last] = await drive_http(self.url, [_outgoing(clean)])
        await self.harness.tracker.settle()
        left = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
        assert not left, f"tasks left pending: {left}"
        checks.check_clean([run.names.marker for run in batch], before)
        return [*outcomes, last]

    def _received(self, clean: Names) -> list[dict[str, Any]]:
        # The transport sends in capture order and the clean request captured
        # last: once its event is in, every earlier one is, and no more come.
        events: list[dict[str, Any]] = []
        while not any(checks.capture_text(e) == clean.message(1) for e in events):
            events = self.ingest.wait_for_events(len(events) + 1, timeout=120)
        return events

    def _check(
        self,
        models: list[RequestModel],
        runs: list[RequestRun],
        outcomes: list[Outcome],
        events: list[dict[str, Any]],
    ) -> None:
        ids = checks.request_ids(models, outcomes, events, runs, self.target.traits)
        checks.check_probes(models, runs, ids)
        checks.check_events(models, events, ids, self.target.traits)

    async def _lifespan_start(self) -> None:
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await self._inbox.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan: asyncio.Task[None] = asyncio.create_task(
            _call(self.app, scope, self._inbox.get, self._outbox.put)
        )
        started = await self._outbox.get()
        assert started["type"] == "lifespan.startup.complete", started

    async def _lifespan_stop(self) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        await self._lifespan


async def _call(app: ASGIApp, scope: Any, receive: Any, send: Any) -> None:
    await app(scope, receive, send)


def _outgoing(run: RequestRun, handed_from: int | None = None) -> Outgoing:
    names, plan = run.names, run.plan
    headers = [(b"x-request-id", value) for value in names.incoming_headers(plan.incoming)]
    if plan.authenticated:
        headers.append((b"authorization", f"Bearer {names.auth_user}".encode()))
    return Outgoing(names.path, tuple(headers), plan.start_turns, handed_from)


def _tracked(app: ASGIApp, harness: Harness) -> ASGIApp:
    """Count each request as running work until its ASGI call (background included) ends."""

    async def tracked(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        harness.tracker.enter()
        try:
            await app(scope, receive, send)
        finally:
            harness.tracker.exit()

    return tracked
