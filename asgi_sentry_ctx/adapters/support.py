"""What a framework adapter needs from the core that an app does not.

An adapter module (one per framework, in ``asgi_sentry_ctx.adapters``)
reaches the core only through this module and ``asgi_sentry_ctx.middleware``
(plus the leaves ``asgi_sentry_ctx._log`` and ``asgi_sentry_ctx._types``);
never through ``asgi_sentry_ctx.context``, ``asgi_sentry_ctx.sentry``,
``asgi_sentry_ctx.store`` or the package root (``tests/test_layout.py``
checks it). The core can change behind this one seam, and adapters stay
thin: what an adapter needs beyond a line of glue belongs in the core and is
exported here.

An adapter installs
[`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware] the way
its framework expects, imports its framework lazily (inside the functions
that need it, so that importing the adapter costs nothing) and, from here:

**Errors the framework handles itself.**

- [`report_exception`][asgi_sentry_ctx.adapters.support.report_exception]
  reports an exception the framework turned into a 500 response inside the
  app (so it never reached the middleware), once, with the request's context;
- [`unwrap_exceptions`][asgi_sentry_ctx.adapters.support.unwrap_exceptions]
  declares a framework's exception wrapper, so that the exception it wraps is
  reported instead;
- [`ignore_exception_types`][asgi_sentry_ctx.ignore_exception_types] declares
  the framework's noise (not found, validation, authentication errors);
- [`declare_http_exceptions`][asgi_sentry_ctx.adapters.support.declare_http_exceptions]
  declares the framework's HTTP exceptions, so that one answered with a
  status in the middleware's ``failed_request_status_codes`` (5xx) is reported.

**Transactions.** ``TransactionNamer``, the type of the middleware's
``transaction_namer``: an adapter passes one that names a request by the
route its framework matched (``transaction_style``, as in sentry-sdk's
integrations).

**Users.**

- [`bind_request_user`][asgi_sentry_ctx.adapters.support.bind_request_user]
  makes what the framework calls a user (a dependency's result, an awaited
  getter's) the current request's Sentry user, read when an event is built or
  right away; ``None`` binds nothing, and it never raises;
- [`check_user_source`][asgi_sentry_ctx.adapters.support.check_user_source]
  refuses an adapter's ``user_getter`` given together with the middleware's
  ``user_extractor``: one rule and one message in every adapter;
- [`user_from`][asgi_sentry_ctx.user_from] and
  [`set_user`][asgi_sentry_ctx.set_user] are the public API's, for an
  adapter's own user lookup (adapters do not import the package root).

**Request IDs.**

- [`RequestIdPolicy`][asgi_sentry_ctx.adapters.support.RequestIdPolicy] holds
  the middleware's request-ID rules (header name, incoming IDs, new IDs,
  echoing), for responses the framework makes outside the middleware
  (Litestar's routing 404s and CORS preflights). A middleware's own is its
  ``ids`` attribute.

**Outgoing HTTP calls.** The HTTP clients' adapters (httpx, aiohttp) add
what an [`OutboundPropagation`][asgi_sentry_ctx.OutboundPropagation] says an
outgoing request gets (the request ID, named business fields) to allowed
hosts; ``DEFAULT_PORTS`` gives the port a URL without one means.

**Task queues.** A queue's adapter (Celery) calls
[`carry_task_context`][asgi_sentry_ctx.adapters.support.carry_task_context]
on each message it publishes (the context travels in the ``TASK_HEADER``
header; sentry-sdk's trace headers are ``TRACE_HEADERS``), and
[`enter_task`][asgi_sentry_ctx.adapters.support.enter_task] /
[`exit_task`][asgi_sentry_ctx.adapters.support.exit_task] around each task
run; ``note_middleware`` tells the set-up that this process's errors have
an owner even without a middleware.

**And** ``logger``, the library's own logger (kept out of Sentry), for an
adapter's own failures; the ASGI types ``ASGIApp``, ``Scope``, ``Receive``,
``Send`` and ``Message``; ``UserExtractor``, the type of the middleware's
``user_extractor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx._types import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    TransactionNamer,
    UserExtractor,
)
from asgi_sentry_ctx.context.capture import (
    declare_http_exceptions,
    report_exception,
    unwrap_exceptions,
)
from asgi_sentry_ctx.context.propagation import DEFAULT_PORTS, OutboundPropagation
from asgi_sentry_ctx.context.request_ids import RequestIdPolicy
from asgi_sentry_ctx.context.tasks import (
    TASK_HEADER,
    TRACE_HEADERS,
    carry_task_context,
    enter_task,
    exit_task,
)
from asgi_sentry_ctx.context.users import bind_request_user, set_user, user_from
from asgi_sentry_ctx.sentry.framework_integrations import note_middleware
from asgi_sentry_ctx.sentry.noise import ignore_exception_types

__all__ = [
    "DEFAULT_PORTS",
    "TASK_HEADER",
    "TRACE_HEADERS",
    "ASGIApp",
    "Message",
    "OutboundPropagation",
    "Receive",
    "RequestIdPolicy",
    "Scope",
    "Send",
    "TransactionNamer",
    "UserExtractor",
    "bind_request_user",
    "carry_task_context",
    "check_user_source",
    "declare_http_exceptions",
    "enter_task",
    "exit_task",
    "ignore_exception_types",
    "logger",
    "note_middleware",
    "report_exception",
    "set_user",
    "unwrap_exceptions",
    "user_from",
]


def check_user_source(user_getter: object, options: Mapping[str, Any]) -> None:
    """Refuse a ``user_getter`` given together with a ``user_extractor`` in ``options``.

    An adapter's ``user_getter`` and the middleware's ``user_extractor`` both
    say where the user comes from, so an adapter takes one or the other.
    ``user_getter=None`` is no getter; ``user_extractor`` counts as soon as it
    is passed, ``None`` included: every adapter reads an explicit
    ``user_extractor=None`` as "no user lookup", which a getter would
    contradict, so the contradiction fails here instead of one of the two
    being silently ignored.

    Raises:
        TypeError: both were given.
    """
    if user_getter is not None and "user_extractor" in options:
        raise TypeError("asgi_sentry_ctx: pass user_getter or user_extractor, not both")
