"""Run a request's program inside an app: the library's API, tasks, threads and executors.

Objects here are deliberately opaque (no dataclass reprs): Sentry sends the
local variables of a raising stack, and a frame holding a whole batch would
put every request's markers into one event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from asgi_sentry_ctx import (
    add_breadcrumb,
    bind_context,
    business_context,
    capture_message,
    clear_user,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.context.business import current_business_context
from tests.leakcheck.plan import (
    Capture,
    ClearUser,
    Crumb,
    InThread,
    LogError,
    Names,
    Nap,
    Probe,
    Program,
    Raise,
    RawExecutor,
    RequestPlan,
    SetBusiness,
    SetUser,
    Spawn,
    WithBusiness,
    Yield,
)

CRUMB_CATEGORY = "leakcheck"

log = logging.getLogger("leakcheck")
log.addHandler(logging.NullHandler())  # events go to Sentry; nothing to print
log.propagate = False

Threadpool = Callable[..., Awaitable[Any]]
"""The framework's way to run a sync function in a worker thread: ``await pool(fn, *args)``."""


class PlannedFailure(Exception):
    """The exception a program raises at its ``Raise`` step."""


class Tracker:
    """Counts work still running anywhere (requests, tasks left running, background
    tasks), so a test waits until everything finished, on a condition, from any thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending = 0
        self.errors: list[str] = []

    def enter(self) -> None:
        with self._changed:
            self._pending += 1

    def exit(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` as a task that nobody awaits."""
        self.enter()
        task = asyncio.create_task(coro)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        if task.cancelled():
            self.errors.append("a task left running was cancelled")
        elif task.exception() is not None:
            self.errors.append(f"a task left running raised {task.exception()!r}")
        self.exit()

    def wait_idle(self, timeout: float = 120.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"{self._pending} pieces of work still running")

    async def settle(self) -> None:
        """Wait (without blocking the loop) until no work is running."""
        await asyncio.to_thread(self.wait_idle)


class RequestRun:
    """One request of the batch being run: its plan, its names, what its probes saw."""

    def __init__(self, plan: RequestPlan, names: Names, tracker: Tracker, pool: Threadpool) -> None:
        self.plan = plan
        self.names = names
        self.tracker = tracker
        self.pool = pool
        self.probes: dict[int, tuple[str | None, dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return "<RequestRun>"

    def probe(self, n: int) -> None:
        self.probes[n] = (get_request_id(), dict(current_business_context()))


async def run_steps(program: Program, run: RequestRun) -> None:
    """Run ``program`` in the current task."""
    names = run.names
    for step in program:
        if isinstance(step, Yield):
            for _ in range(step.turns):
                await asyncio.sleep(0)
        elif isinstance(step, Nap):
            await asyncio.sleep(0.001)
        elif isinstance(step, WithBusiness):
            with business_context(**names.fields(step.fields)):
                await run_steps(step.body, run)
        elif isinstance(step, RawExecutor):
            # Bare run_in_executor copies no context: the probe must see no request.
            await asyncio.get_running_loop().run_in_executor(None, run.probe, step.n)
        elif isinstance(step, Spawn):
            children = [run_steps(body, run) for body in step.bodies]
            if step.mode == "await":
                await asyncio.create_task(children[0])
            elif step.mode == "gather":
                await asyncio.gather(*children)
            else:
                run.tracker.spawn(children[0])
        elif isinstance(step, InThread):
            if step.via == "to_thread":
                await asyncio.to_thread(run_sync_steps, step.body, run)
            elif step.via == "threadpool":
                await run.pool(run_sync_steps, step.body, run)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, bind_context(run_sync_steps), step.body, run)
        elif isinstance(step, Raise):
            raise PlannedFailure(names.exception(step.n))
        else:
            _run_simple(step, run)


def run_sync_steps(program: Program, run: RequestRun) -> None:
    """Run ``program`` (sync steps only) in the current thread."""
    for step in program:
        if isinstance(step, WithBusiness):
            with business_context(**run.names.fields(step.fields)):
                run_sync_steps(step.body, run)
        else:
            _run_simple(step, run)


def _run_simple(step: object, run: RequestRun) -> None:
    names = run.names
    if isinstance(step, Crumb):
        add_breadcrumb(names.crumb(step.n), category=CRUMB_CATEGORY)
    elif isinstance(step, SetBusiness):
        set_business_context(**names.fields(step.fields))
    elif isinstance(step, SetUser):
        set_user(names.user(step.n))
    elif isinstance(step, ClearUser):
        clear_user()
    elif isinstance(step, Capture):
        capture_message(names.message(step.n))
    elif isinstance(step, LogError):
        log.error(names.log(step.n))
    elif isinstance(step, Probe):
        run.probe(step.n)
    else:
        raise AssertionError(f"step {step!r} cannot run here")
