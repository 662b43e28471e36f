"""Capturing: messages with one-off context, and exceptions reported once per request."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception

from asgi_sentry_ctx.logs import logger
from asgi_sentry_ctx.state import current_request

__all__ = ["capture_message", "report_exception"]


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
    request is not reported again. Never raises.
    """
    state = current_request()
    if state is not None and state.reported is exc:
        return
    try:
        event, hint = event_from_exception(
            exc,
            client_options=sentry_sdk.get_client().options,
            mechanism={"type": mechanism, "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not report an exception to Sentry")
    if state is not None:
        state.reported = exc
