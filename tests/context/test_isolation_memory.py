"""No retained per-request objects: 10,000 requests leave no memory and no task behind.

The raw core runs a program that touches every part of the library a
request can (user, business fields, breadcrumbs, tasks left running,
threads, bound and bare executors, an event now and then, an exception now
and then). After a warm-up (caches, thread pools, the SDK's first event),
memory is compared with tracemalloc and live objects are counted with gc.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx.testing import SentryIngest
from tests.leakcheck.checks import live_request_states
from tests.leakcheck.drivers import Outgoing, drive_in_process
from tests.leakcheck.interpreter import RequestRun
from tests.leakcheck.plan import (
    Capture,
    Crumb,
    IncomingId,
    InThread,
    Names,
    Probe,
    Raise,
    RawExecutor,
    RequestPlan,
    SetBusiness,
    SetUser,
    Spawn,
    WithBusiness,
    Yield,
    numbered,
)
from tests.leakcheck.rig import sentry_to
from tests.leakcheck.targets import RAW, Harness

REQUESTS = 10_000
WARM_UP = 3_000
WAVE = 50  # concurrent requests

_BODY = (
    SetUser(),
    SetBusiness((("podcast_id", "1"), ("action", "upload"))),
    Crumb(),
    Yield(1),
    WithBusiness((("episode_id", "2"),), (Crumb(), Probe())),
    Spawn("detach", ((Yield(2), Crumb(), Probe()),)),
    Spawn("gather", ((Crumb(),), (Yield(1), Probe()))),
    InThread("to_thread", (Crumb(), Probe())),
    InThread("bound_executor", (Probe(),)),
    RawExecutor(),
)
QUIET = numbered(RequestPlan(IncomingId("valid"), True, 0, _BODY, stream=(Crumb(),)))
CAPTURING = numbered(RequestPlan(IncomingId("absent"), False, 0, (*_BODY, Capture())))
RAISING = numbered(RequestPlan(IncomingId("hostile", hostile="huge"), True, 0, (*_BODY, Raise())))


def plan_for(index: int) -> RequestPlan:
    # An event per 100 requests: enough to build events all along, few enough
    # that delivering them does not dominate the run.
    if index % 200 == 0:
        return RAISING
    if index % 200 == 100:
        return CAPTURING
    return QUIET


class Load:
    def __init__(self, ingest: SentryIngest) -> None:
        self.ingest = ingest
        self.harness = Harness()
        self.app = RAW.build(self.harness)
        self.sent = 0
        self.events = 0

    async def send(self, count: int) -> None:
        for start in range(self.sent, self.sent + count, WAVE):
            runs = []
            for index in range(start, min(start + WAVE, self.sent + count)):
                plan = plan_for(index)
                self.events += plan is not QUIET
                runs.append(RequestRun(plan, Names(0, index), self.harness.tracker, RAW.pool))
            self.harness.runs = {run.names.path: run for run in runs}
            await drive_in_process(self.app, [_outgoing(run) for run in runs])
            await self.harness.tracker.settle()
            self.harness.runs = {}
        self.sent += count
        assert not self.harness.tracker.errors
        sentry_sdk.flush(60)
        assert len(self.ingest.wait_for_events(self.events, timeout=120)) == self.events
        self.ingest.clear()
        self.events = 0


def _outgoing(run: RequestRun) -> Outgoing:
    headers = [(b"x-request-id", v) for v in run.names.incoming_headers(run.plan.incoming)]
    if run.plan.authenticated:
        headers.append((b"authorization", f"Bearer {run.names.auth_user}".encode()))
    return Outgoing(run.names.path, tuple(headers))


@pytest.fixture(scope="module")
def measured() -> Iterator[dict[str, Any]]:
    """Send 10,000 requests after a warm-up; measure before and after."""
    # Few breadcrumbs: the SDK records one per envelope it posts, in its
    # transport thread's scope, and the warm-up must fill that trail up.
    with SentryIngest() as ingest, sentry_to(ingest, max_breadcrumbs=20):
        load = Load(ingest)
        with asyncio.Runner() as runner:
            runner.run(load.send(WARM_UP))
            tasks_before = runner.run(_pending_tasks())
            before = _measure()
            runner.run(load.send(REQUESTS))
            after = _measure()
            tasks_after = runner.run(_pending_tasks())
            yield {
                "before": before,
                "after": after,
                "tasks_before": tasks_before,
                "tasks_after": tasks_after,
            }


async def _pending_tasks() -> int:
    return len(asyncio.all_tasks()) - 1  # not counting this one


def _measure() -> dict[str, int]:
    gc.collect()
    if not tracemalloc.is_tracing():
        tracemalloc.start()
        gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    return {
        "traced": traced,
        "objects": len(gc.get_objects()),
        "request_states": live_request_states(),
        "threads": threading.active_count(),
    }


@pytest.fixture(scope="module", autouse=True)
def stop_tracing() -> Iterator[None]:
    yield
    tracemalloc.stop()


def test_memory_does_not_grow_over_10000_requests(measured: dict[str, Any]) -> None:
    before, after = measured["before"], measured["after"]
    # A leak of a single small object per request is at least 10,000 objects
    # and about half a megabyte; what remains after warm-up is noise.
    assert after["objects"] - before["objects"] < REQUESTS // 10
    assert after["traced"] - before["traced"] < 256 * 1024


def test_no_request_state_outlives_its_request_beyond_the_thread_pools(
    measured: dict[str, Any],
) -> None:
    # sentry-sdk's ThreadingIntegration gives each new thread a copy of the
    # scope of the request that started it, for the thread's life: at most one
    # state per live thread. The pools' threads all started during the
    # warm-up, so 10,000 more requests leave not one more state.
    before, after = measured["before"], measured["after"]
    assert after["request_states"] <= after["threads"]
    assert after["request_states"] <= before["request_states"]


def test_no_task_is_left_pending_after_10000_requests(measured: dict[str, Any]) -> None:
    assert measured["tasks_after"] == measured["tasks_before"] == 0
