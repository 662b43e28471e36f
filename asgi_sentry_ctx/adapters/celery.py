"""Celery: one call carries the request's context into every task, and restores it in the worker.

[`install`][asgi_sentry_ctx.adapters.celery.install] connects four of
Celery's signals, process-wide (Celery's signals are not per app):

- ``before_task_publish``: every message this process publishes (``delay``,
  ``apply_async``, ``send_task``, the links of chains, groups and chords,
  retries) gets the request ID, user id and business fields in force, in
  one header (see docs/celery.md), outside any request a new request ID;
  and sentry-sdk's trace headers where its own integration added none;
- ``task_prerun`` / ``task_postrun``: every task this process runs runs in
  its own Sentry isolation scope with that context restored, and undone
  after (a task run eagerly, ``task_always_eager`` or ``apply()``, runs in
  its caller's context instead, as a function call would);
- ``task_failure``: a task's exception is reported once, with the
  originating request ID and user; not again when sentry-sdk's own
  ``CeleryIntegration`` (on by default where Celery is installed) reported
  it first. Exceptions the task declares as expected (``Task.throws``) are
  not reported, as the SDK's integration has it.

Call it where both the web app and the worker import it: the module that
creates the Celery app. Celery is imported only when ``install`` runs.
"""

from __future__ import annotations

import sys
from typing import Any

from asgi_sentry_ctx.adapters.support import (
    TASK_HEADER,
    TRACE_HEADERS,
    carry_task_context,
    enter_task,
    exit_task,
    logger,
    note_middleware,
    report_exception,
)

__all__ = ["install"]

_UID = "asgi_sentry_ctx"  # Celery's dispatch_uid: connecting twice replaces, never duplicates


def install() -> None:
    """Carry the request's context into the tasks this process publishes, and
    restore it in the tasks it runs. Idempotent: calling it again changes nothing."""
    from celery import signals  # type: ignore[import-untyped]

    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID)
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID)
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid=_UID)


def _on_publish(headers: Any = None, **_: Any) -> None:
    # Message protocol 2 (Celery's default since 4.0): ``headers`` are the
    # message's headers, which become ``task.request`` attributes in the worker.
    if isinstance(headers, dict):
        carry_task_context(headers)


def _on_prerun(task: Any = None, **_: Any) -> None:
    try:
        request = task.request
        if request.is_eager:
            return
        enter_task(
            request.get(TASK_HEADER),
            name=str(getattr(task, "name", "") or ""),
            trace=_trace_headers(request),
        )
        # A worker's errors have an owner: no warning about a missing middleware.
        note_middleware()
    except Exception:
        logger.exception("asgi_sentry_ctx: could not restore a task's request context")


def _on_postrun(task: Any = None, **_: Any) -> None:
    try:
        if not task.request.is_eager:
            exit_task()
    except Exception:
        logger.exception("asgi_sentry_ctx: could not clear a task's request context")


def _on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    # Celery sends this from inside its ``except`` block: the exception being
    # handled is the task's own, where ``exception`` may be a pickleable copy.
    exc = sys.exception() or exception
    if exc is None:
        return
    throws = getattr(sender, "throws", ()) or ()
    if throws and isinstance(exc, throws):
        return
    report_exception(exc, mechanism="celery")


def _trace_headers(request: Any) -> dict[str, Any] | None:
    """The message's sentry-sdk trace headers, or ``None`` when the SDK's
    ``CeleryIntegration`` is on: it continued the trace already."""
    import sentry_sdk

    if sentry_sdk.get_client().get_integration("celery") is not None:
        return None
    return {key: value for key in TRACE_HEADERS if isinstance(value := request.get(key), str)}
