"""The Celery app of ``tests/adapters/test_celery.py``: the test process publishes
with it, and the worker the tests start (``celery -A tests.celery_app worker``) runs it.

The worker reads its set-up from the environment: ``TEST_CELERY_BROKER`` (the
test's redis-server), ``TEST_CELERY_RESULTS`` (the results directory, a
``file://`` URL), ``SENTRY_DSN`` (the test's loopback ingest) and
``TEST_CELERY_SDK_INTEGRATION`` (``off`` disables sentry-sdk's
``CeleryIntegration``). It initialises Sentry only when ``TEST_CELERY_WORKER``
is set: the test process sets its own Sentry up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import sentry_sdk
from celery import Celery, Task  # type: ignore[import-untyped]

from asgi_sentry_ctx import (
    RequestContextFilter,
    add_breadcrumb,
    current_user,
    get_request_id,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.adapters.celery import install
from asgi_sentry_ctx.context.business import current_business_context

_BROKER = os.environ.get("TEST_CELERY_BROKER", "redis://127.0.0.1:6379/0")
# Results in files, not in redis: a redis result backend subscribes each
# pending result, and one collected after the tests stopped redis-server
# retries its unsubscribe for 20 seconds in whatever test runs then.
_RESULTS = os.environ.get("TEST_CELERY_RESULTS", "file:///tmp/asgi-sentry-ctx-celery-results")

app = Celery("tests.celery_app", broker=_BROKER, backend=_RESULTS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
install()

# Celery is untyped: its decorator, typed, so that mypy keeps checking the tasks' bodies.
task: Callable[..., Callable[[Callable[..., Any]], Any]] = app.task


class TaskFailure(Exception):
    """What ``fail`` raises: its message is the token the test looks for."""


@task()
def fail(token: str) -> None:
    """Leave traces of this run (a crumb, tags, a business field), then fail."""
    add_breadcrumb(f"crumb {token}")
    sentry_sdk.set_tag("task_token", token)
    sentry_sdk.set_tag(f"seen_{token}", "yes")  # a key no other run sets
    sentry_sdk.set_tag("worker_pid", str(os.getpid()))
    set_business_context(task_token=token)
    raise TaskFailure(token)


class Expected(Exception):
    """What ``fail_as_expected`` raises, and declares it may."""


@task(throws=(Expected,))
def fail_as_expected(token: str) -> None:
    """Fail with an exception the task declares as expected (``Task.throws``)."""
    raise Expected(token)


@task()
def probe() -> dict[str, Any]:
    """What this run sees of the context it was published in, and the worker's pid."""
    return {
        "request_id": get_request_id(),
        "user": current_user(),
        "business": dict(current_business_context()),
        "log": _log_line("probing"),
        "pid": os.getpid(),
    }


@task()
def collect(ids: list[str] | None = None) -> list[str]:
    """The request IDs of the earlier links of a chain, then this one's."""
    return [*(ids or []), str(get_request_id())]


@task()
def collect_all(results: list[list[str]]) -> list[str]:
    """A chord's body: its own request ID, then its header tasks'."""
    return [str(get_request_id()), *(found for result in results for found in result)]


@task(bind=True, max_retries=2)
def retrying(self: Task, seen: list[str]) -> list[str]:
    """Retry twice, each attempt adding the request ID it sees."""
    seen = [*seen, str(get_request_id())]
    if self.request.retries < 2:
        raise self.retry(args=[seen], countdown=0)
    return seen


@task()
def marker(text: str) -> None:
    """A message event that arrives after every event this worker process sent before."""
    sentry_sdk.capture_message(text)
    sentry_sdk.flush(10)


def _log_line(message: str) -> str:
    """``message`` logged through a handler with the library's filter, as formatted."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(user_id)s %(message)s"))
    log = logging.getLogger("tests.celery_app.probe")
    log.setLevel(logging.INFO)  # INFO: a breadcrumb at most, never an event
    log.addHandler(handler)
    try:
        log.info(message)
    finally:
        log.removeHandler(handler)
    return lines[0]


if os.environ.get("TEST_CELERY_WORKER"):
    from sentry_sdk.integrations.celery import CeleryIntegration

    off = os.environ.get("TEST_CELERY_SDK_INTEGRATION") == "off"
    init_sentry(
        traces_sample_rate=0.0,
        transport_queue_size=10_000,
        disabled_integrations=[CeleryIntegration] if off else [],
    )
