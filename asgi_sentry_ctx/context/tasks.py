"""Tasks handed to a queue: what a published task carries, and the context its run restores.

A task published during a request (or during a task that carries one's
context) carries, in one message header (``TASK_HEADER``), the request ID,
the user id and the business fields in force, and the Sentry trace in
sentry-sdk's own headers when nothing else put it there. A task published
outside any request gets a request ID of its own, so that everything it
leads to (its retries, the next links of a chain, the tasks it publishes) is
found by one ID.

The worker runs each task in a Sentry isolation scope of its own, forked
from the one in force outside any task, with no user and no breadcrumbs of
its own yet; the carried context is restored there: ``get_request_id()``
answers the originating ID, log records and events carry it and the user,
the business fields are in force as in the request. Everything is undone
when the task ends, so the next task the same process (or pool thread) runs
starts clean.

A task queue's adapter (``asgi_sentry_ctx.adapters.celery``) calls
``carry_task_context`` as each message is published, and ``enter_task`` /
``exit_task`` around each run: this module knows no task queue.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar, Token
from functools import partial
from time import time
from typing import Any

import sentry_sdk
from sentry_sdk.scope import Scope, _current_scope, _isolation_scope
from sentry_sdk.tracing_utils import PropagationContext

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.business import _fields as _business_fields
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.context.enrich import enrich_event
from asgi_sentry_ctx.context.request_ids import generate_request_id, is_valid_request_id
from asgi_sentry_ctx.context.state import RequestState, _current, current_request
from asgi_sentry_ctx.context.users import current_user

__all__ = [
    "TASK_HEADER",
    "TRACE_HEADERS",
    "TaskState",
    "carry_task_context",
    "enter_task",
    "exit_task",
]

TASK_HEADER = "asgi_sentry_ctx"
"""The message header a published task's context travels in."""

TRACE_HEADERS = ("sentry-trace", "baggage")
"""sentry-sdk's trace headers, as its own task-queue integrations name them."""

_MAX_USER_ID = 200  # a Sentry tag value's limit: longer is no id
_SCALARS = (str, int, float, bool)
# The run this context is in, if any: what ``exit_task`` undoes.
_running: ContextVar[_TaskRun | None] = ContextVar("asgi_sentry_ctx.task", default=None)


class TaskState(RequestState):
    """What one task run contributes to its events; ``current_request()`` while it runs.

    A request's state without the request: no ASGI scope, no request data, no
    entry and exit crumbs. Its event processor is a request's: the
    originating request ID, the carried user, and the task's name as the
    event's transaction (source ``task``).
    """

    __slots__ = ("name",)

    def __init__(self, request_id: str, name: str) -> None:
        # No ASGI scope: what reads one (request data, the trace of a
        # request) never runs for a task's state.
        super().__init__(request_id, {"type": "task", "headers": []}, None, False, time())
        self.name = name
        self.transaction_namer = partial(_named_as_task, name)

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        """The task's event processor: a request's (its request ID, user,
        business fields, one event per exception), named by the task."""
        return enrich_event(self, event, hint)


def _named_as_task(name: str, scope: Any) -> tuple[str, str]:
    return name, "task"


class _TaskRun:
    """The tokens that undo one ``enter_task``."""

    __slots__ = ("isolation", "own", "request")

    def __init__(self) -> None:
        self.isolation: Token[Scope | None] | None = None
        self.request: Token[RequestState | None] | None = None
        self.own: Token[_TaskRun | None] | None = None


def carry_task_context(headers: MutableMapping[str, Any]) -> None:
    """Add the context in force to a task message's ``headers``, as ``TASK_HEADER``.

    Inside a request or a task: its request ID, its user's id (the user an
    event would carry here, a lazily resolved one included) and its business
    fields. Outside both: a new request ID, plus the user and business
    fields in force, if any. Only the user's id travels: the message sits in
    the broker, which is no place for e-mail addresses. Business fields of a
    type a message serializer may refuse travel as their ``str()``. A header
    the app set itself is kept as it is.

    The trace goes too, in sentry-sdk's own headers, where its Celery
    integration put none: it puts them only inside a transaction, and the
    middleware starts one only for sampled requests. Never raises: a task
    without context beats a task not published.
    """
    try:
        if TASK_HEADER not in headers:
            headers[TASK_HEADER] = _outgoing()
        if TRACE_HEADERS[0] not in headers:
            _add_trace(headers)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not add the request context to a task")


def _outgoing() -> dict[str, Any]:
    state = current_request()
    carried: dict[str, Any] = {
        "request_id": state.request_id if state is not None else generate_request_id()
    }
    user = current_user()
    if user and user.get("id") is not None:
        carried["user_id"] = str(user["id"])
    fields = current_business_context()
    if fields:
        carried["business"] = {
            str(key): value if value is None or isinstance(value, _SCALARS) else str(value)
            for key, value in fields.items()
        }
    return carried


def _add_trace(headers: MutableMapping[str, Any]) -> None:
    """sentry-sdk's trace headers, where its Celery integration reads them:
    the message's headers, and the ``headers`` inside them (celery#4875)."""
    scope = sentry_sdk.get_current_scope()
    # Inside a span of no transaction (the SDK's "queue.submit" of an
    # unsampled request) the span gives none: the scope's trace does.
    trace = dict(scope.iter_trace_propagation_headers()) or dict(
        scope.get_active_propagation_context().iter_headers()
    )
    if not trace:
        return
    headers.update(trace)
    inner = headers.get("headers")
    if not isinstance(inner, MutableMapping):
        inner = headers["headers"] = {}
    for key, value in trace.items():
        inner.setdefault(key, value)


def enter_task(carried: object, *, name: str, trace: Mapping[str, Any] | None = None) -> TaskState:
    """Run the rest of the current context as a task with the ``carried`` context restored.

    ``carried`` is the ``TASK_HEADER`` value of the task's message, from
    whoever published it, so it is checked: an invalid request ID is
    replaced by a new one (logged), a user id or business block of the
    wrong shape is left out. No header (a publisher without this library) is
    a task of its own, with a new ID. ``name`` names the task's events.

    ``trace``: the message's trace headers (``TRACE_HEADERS``), whose trace
    the task continues (a new one when they hold none); ``None`` keeps the
    trace in force, for sentry-sdk's Celery integration, which continued it
    already. Returns the task's state; undo with ``exit_task``, in the same
    context.
    """
    request_id, user, business = _incoming(carried)
    state = TaskState(request_id, name)
    state.user = user
    state.business = business
    state.base_business = _business_fields.get()
    parent = _isolation_scope.get() or Scope.get_isolation_scope()
    state.base_isolation = parent
    state.base_current = _current_scope.get()
    isolation = parent.fork()
    isolation._user = None  # a user set outside tasks is not this task's
    isolation.clear_breadcrumbs()  # the process's crumbs, or the last task's
    if trace is not None:
        isolation._propagation_context = PropagationContext.from_incoming_data(dict(trace))
    isolation.add_event_processor(state)  # type: ignore[arg-type]
    run = _TaskRun()
    run.isolation = _isolation_scope.set(isolation)
    run.request = _current.set(state)
    run.own = _running.set(run)
    return state


def exit_task() -> None:
    """Undo the last ``enter_task`` of this context: the scopes and request
    state in force before it are back. Does nothing when none is in force."""
    run = _running.get()
    if run is None:
        return
    if run.own is not None:
        _running.reset(run.own)
    if run.request is not None:
        _current.reset(run.request)
    if run.isolation is not None:
        _isolation_scope.reset(run.isolation)


def _incoming(carried: object) -> tuple[str, dict[str, Any] | None, Mapping[str, Any] | None]:
    """The request ID, user and business fields ``carried``, each checked."""
    if not isinstance(carried, Mapping):
        if carried is not None:
            logger.warning("asgi_sentry_ctx: a task's context header is malformed; ignored")
        return generate_request_id(), None, None
    request_id = carried.get("request_id")
    if not isinstance(request_id, str) or not is_valid_request_id(request_id):
        logger.warning("asgi_sentry_ctx: a task carried an invalid request ID; a new one is used")
        request_id = generate_request_id()
    user_id = carried.get("user_id")
    user = None
    if isinstance(user_id, str | int) and not isinstance(user_id, bool):
        text = str(user_id)
        if 0 < len(text) <= _MAX_USER_ID:
            user = {"id": text}
    business = carried.get("business")
    if not isinstance(business, Mapping) or not all(isinstance(k, str) for k in business):
        business = None
    return request_id, user, dict(business) if business else None
