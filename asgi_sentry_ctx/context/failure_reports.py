"""Failure reports: one call sends a failure to Sentry and to every sink the app registered.

The "bug reporter" pattern: when an upload fails, the team needs it in Sentry
(with the request, user and business context) and the app needs it elsewhere
too, a row for the user-facing notification, an email to an admin::

    @register_sink
    async def notify_user(failure: Failure) -> None:
        await db.notifications.insert(user_id=failure.user_id, ref=failure.event_id)

    report_failure("upload failed", category="upload", code="GCS_503", episode_id=42)

A sink that raises is logged and never stops Sentry or the other sinks.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.business import current_business_context, tag_value
from asgi_sentry_ctx.context.request_ids import get_request_id
from asgi_sentry_ctx.context.users import current_user

if TYPE_CHECKING:
    from sentry_sdk._types import Event

__all__ = ["Failure", "Sink", "register_sink", "report_failure", "unregister_sink"]


@dataclass(frozen=True)
class Failure:
    """What a sink receives: the failure and the context it happened in."""

    event_id: str
    """The Sentry event id: the same id is in Sentry when it kept the event."""
    message: str
    category: str
    code: str | int | None
    level: str
    context: Mapping[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    user: Mapping[str, Any] | None = None
    business: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def user_id(self) -> str | None:
        """The user's id, or ``None`` when no user is known."""
        return None if self.user is None else self.user.get("id")


Sink = Callable[[Failure], Awaitable[object] | object]

_sinks: list[Sink] = []
_sinks_lock = threading.Lock()
_tasks: set[asyncio.Task[object]] = set()  # async sinks running: kept until done


def register_sink(sink: Sink) -> Sink:
    """Call ``sink(failure)`` for every
    [`report_failure`][asgi_sentry_ctx.report_failure]; usable as a decorator.

    A sync sink runs inline (keep it quick). An async sink runs as a task on
    the running event loop, in the reporting request's context; with no loop
    running (a thread, a script) it runs to completion before
    [`report_failure`][asgi_sentry_ctx.report_failure] returns. Registering
    the same sink twice is a no-op.
    """
    with _sinks_lock:
        if sink not in _sinks:
            _sinks.append(sink)
    return sink


def unregister_sink(sink: Sink) -> None:
    """Stop calling ``sink`` (no error if it was not registered)."""
    with _sinks_lock:
        if sink in _sinks:
            _sinks.remove(sink)


def report_failure(
    message: str,
    *,
    category: str,
    code: str | int | None = None,
    level: str = "error",
    **context: Any,
) -> str:
    """Report a failure to Sentry and to every registered sink; return the event id.

    The Sentry event carries the current request ID, user and business context
    like any other, plus the tags ``failure.category`` and ``failure.code``
    and a ``failure`` context block holding ``context``. Failures with a
    ``code`` are grouped in Sentry by category and code, whatever the message.
    The returned id is the Sentry event id; it is returned (and given to the
    sinks) even when Sentry is off or dropped the event, so a user-facing
    notification can always quote it.
    """
    event_id = uuid.uuid4().hex
    failure = Failure(
        event_id=event_id,
        message=message,
        category=category,
        code=code,
        level=level,
        context=dict(context),
        request_id=get_request_id(),
        user=current_user(),
        business=dict(current_business_context()),
    )
    try:
        sentry_sdk.capture_event(cast("Event", _event(failure)))
    except Exception:
        logger.exception("asgi_sentry_ctx: could not report a failure to Sentry")
    with _sinks_lock:
        sinks = list(_sinks)
    for sink in sinks:
        _call(sink, failure)
    return event_id


def _event(failure: Failure) -> dict[str, Any]:
    tags = {"failure.category": tag_value(failure.category)}
    if failure.code is not None:
        tags["failure.code"] = tag_value(failure.code)
    event: dict[str, Any] = {
        "event_id": failure.event_id,
        "message": failure.message,
        "level": failure.level,
        "tags": {key: value for key, value in tags.items() if value is not None},
        "contexts": {
            "failure": {"category": failure.category, "code": failure.code, **failure.context}
        },
    }
    if failure.code is not None:
        event["fingerprint"] = ["failure", failure.category, str(failure.code)]
    return event


def _call(sink: Sink, failure: Failure) -> None:
    try:
        result = sink(failure)
    except Exception:
        logger.exception("asgi_sentry_ctx: failure sink %r raised", sink)
        return
    if not inspect.isawaitable(result):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            asyncio.run(_awaited(result))
        except Exception:
            logger.exception("asgi_sentry_ctx: failure sink %r raised", sink)
        return
    task: asyncio.Task[object] = loop.create_task(_awaited(result))
    _tasks.add(task)
    task.add_done_callback(lambda done: _finished(done, sink))


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


def _finished(task: asyncio.Task[object], sink: Sink) -> None:
    _tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("asgi_sentry_ctx: failure sink %r raised", sink, exc_info=exc)
