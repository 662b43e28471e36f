"""Capturing: messages with one-off context, and exceptions reported once per request."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.scope import add_global_event_processor
from sentry_sdk.utils import event_from_exception

from asgi_sentry_ctx.logs import logger
from asgi_sentry_ctx.state import current_request

if TYPE_CHECKING:
    from sentry_sdk._types import EventProcessor

__all__ = ["capture_message", "mark_reported", "report_exception", "unwrap_exceptions"]

_REPORTED = "__asgi_sentry_ctx_reported__"
_MAX_CHAIN = 8

Unwrap = Callable[[BaseException], BaseException | None]
"""Given an exception, the one it wraps if it is a framework's wrapper, else ``None``."""

# Wrappers the framework adapters declared (Litestar's "Exception caught after
# response started"); read at report time, like the noise filter's types.
_unwrappers: list[Unwrap] = []


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
    """Report ``exc`` as unhandled, unless it was reported already in this request.

    Used by the middleware for exceptions escaping the app, and by adapters
    whose framework turns exceptions into 500 responses inside the app. An
    exception some other integration (the SDK's own) captured earlier in the
    request is not reported again. A wrapper a framework put around the
    app's exception (see :func:`unwrap_exceptions`) is reported as the
    exception it wraps. Never raises.
    """
    original = _original(exc)
    state = current_request()
    if state is not None and (state.reported is exc or state.reported is original):
        return
    try:
        event, hint = event_from_exception(
            original,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": mechanism, "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not report an exception to Sentry")
    mark_reported(exc)
    mark_reported(original)
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
    for _ in range(_MAX_CHAIN):
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


def mark_reported(exc: BaseException) -> None:
    """Remember on ``exc`` itself that it reached Sentry, for :func:`_drop_logged_duplicate`."""
    # An exception type that refuses attributes leaves the SDK's Dedupe as the only guard.
    with suppress(Exception):
        setattr(exc, _REPORTED, True)


def _drop_logged_duplicate(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    # After the middleware re-raises, the server logs the same error ("Exception
    # in ASGI application"), sometimes wrapped first (Litestar): with the
    # logging integration that is a second event for one error, and the SDK's
    # Dedupe misses it when the object differs or another error came between.
    if not hint or "log_record" not in hint:
        return event
    exc_info = hint.get("exc_info")
    exc = exc_info[1] if exc_info else None
    for _ in range(_MAX_CHAIN):
        if exc is None:
            break
        if getattr(exc, _REPORTED, False):
            return None
        exc = exc.__cause__ or exc.__context__
    return event


add_global_event_processor(cast("EventProcessor", _drop_logged_duplicate))
