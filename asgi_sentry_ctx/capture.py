"""``capture_message``: a non-error event with context for that one event only."""

from __future__ import annotations

from typing import Any

import sentry_sdk

__all__ = ["capture_message"]


def capture_message(message: str, level: str = "info", **context: Any) -> str | None:
    """Send ``message`` to Sentry with the current request's context; return its event id.

    Keyword arguments are attached to this event only (as ``extra``), never to
    the scope, so they do not follow later events::

        capture_message("quota almost used", level="warning", used=980, quota=1000)

    Returns ``None`` when Sentry is off or the event was dropped.
    """
    return sentry_sdk.capture_message(message, level=level, extras=context)  # type: ignore[arg-type]
