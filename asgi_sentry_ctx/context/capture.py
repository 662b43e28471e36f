"""Capturing: messages with one-off context, and the app's exceptions, reported once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.report_once import MAX_CHAIN, is_reported, mark_reported
from asgi_sentry_ctx.context.state import current_request

__all__ = [
    "capture_message",
    "declare_http_exceptions",
    "report_exception",
    "report_failed_response",
    "unwrap_exceptions",
]

Unwrap = Callable[[BaseException], BaseException | None]
"""Given an exception, the one it wraps if it is a framework's wrapper, else ``None``."""

# Wrappers the framework adapters declared (Litestar's "Exception caught after
# response started"); read at report time, like the noise filter's types.
_unwrappers: list[Unwrap] = []

# The frameworks' HTTP exceptions (``declare_http_exceptions``); a tuple, for ``isinstance``.
_http_exceptions: tuple[type[BaseException], ...] = ()


def capture_message(message: str, level: str = "info", **context: Any) -> str | None:
    """Send ``message`` to Sentry with the current request's context; return its event id.

    Keyword arguments are attached to this event only (as ``extra``), never to
    the scope, so they do not follow later events:

    ```python
    capture_message("quota almost used", level="warning", used=980, quota=1000)
    ```

    Returns ``None`` when Sentry is off or the event was dropped.
    """
    return sentry_sdk.capture_message(message, level=level, extras=context)  # type: ignore[arg-type]


def report_exception(exc: BaseException, *, mechanism: str = "asgi_sentry_ctx") -> None:
    """Report ``exc`` as unhandled, unless it reached Sentry already.

    Used by the middleware for exceptions escaping the app, and by adapters
    whose framework turns exceptions into 500 responses inside the app, or
    reports them outside any request (Quart's background tasks). An exception
    some other integration (the SDK's own) captured earlier is not reported
    again. A wrapper a framework put around the
    app's exception (see ``unwrap_exceptions``) is reported as the
    exception it wraps. Never raises.
    """
    original = _original(exc)
    if is_reported(original):
        return
    state = current_request()
    if state is not None and (state.reported is exc or state.reported is original):
        return  # an exception that refuses the mark
    try:
        event, hint = event_from_exception(
            original,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": mechanism, "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not report an exception to Sentry")
    # ``report_once`` marked ``original`` on its way through the processors;
    # the wrapper too is reported, should an outer layer capture it again.
    if exc is not original:
        mark_reported(exc)
    if state is not None:
        state.reported = original


def unwrap_exceptions(unwrap: Unwrap) -> None:
    """Report the exception a framework's wrapper stands for, not the wrapper.

    ``unwrap(exc)`` returns the exception ``exc`` wraps when ``exc`` is such a
    wrapper, else ``None``. Some frameworks re-raise what the app raised
    inside an exception of their own, once per layer (Litestar, after the
    response started): the SDK reports a chain of those, which hides an
    exception group's members, and a layer that re-raises ``from None``
    (sentry-sdk's ASGI middleware) cuts the app's exception off the chain.
    Process-wide and permanent, like ``ignore_exception_types``: meant for
    framework adapters. Registering the same function twice has no effect.
    """
    if unwrap not in _unwrappers:
        _unwrappers.append(unwrap)


def _original(exc: BaseException) -> BaseException:
    for _ in range(MAX_CHAIN):
        for unwrap in _unwrappers:
            try:
                inner = unwrap(exc)
            except Exception:
                logger.exception("asgi_sentry_ctx: an exception unwrapper failed")
                inner = None
            if inner is not None:
                exc = inner
                break
        else:
            return exc
    return exc


def declare_http_exceptions(*types: type[BaseException]) -> None:
    """Declare a framework's HTTP exceptions: the ones it answers with their own status.

    Such an exception answered with a status in the middleware's
    ``failed_request_status_codes`` (500 to 599 by default, as sentry-sdk's
    integrations have it) is reported (see ``report_failed_response``);
    a ``raise HTTPException(503)`` would otherwise reach no one.
    Process-wide and permanent, like ``ignore_exception_types``: meant for
    framework adapters.
    """
    global _http_exceptions
    _http_exceptions = (*_http_exceptions, *(t for t in types if t not in _http_exceptions))


def report_failed_response() -> None:
    """Report the declared HTTP exception being handled, if any: a response
    with a failed status is starting.

    Called by the middleware as the response starts. Starlette, FastAPI and
    Litestar send the response of an exception handler inside their
    ``except`` block, so the exception is the one being handled then.
    """
    exc = sys.exception()
    if exc is not None and isinstance(exc, _http_exceptions):
        report_exception(exc)
