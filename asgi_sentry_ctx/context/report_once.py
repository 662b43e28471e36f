"""One event per exception, whoever captures it first.

Each exception that reaches Sentry is marked on the object itself; a later
capture of it (or, for a log record, of any exception of its chain) is
dropped. ``report_once`` is a global event processor: the set-up step
(`asgi_sentry_ctx.sentry.hooks.setup_once`) registers it.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

__all__ = ["MAX_CHAIN", "is_reported", "mark_reported", "report_once"]

_REPORTED = "__asgi_sentry_ctx_reported__"
MAX_CHAIN = 8
"""How far along an exception chain (or a wrapper's unwrapping) to look."""


def is_reported(exc: BaseException) -> bool:
    """Whether ``exc`` reached Sentry already."""
    return getattr(exc, _REPORTED, False) is True


def mark_reported(exc: BaseException) -> None:
    """Remember on ``exc`` itself that it reached Sentry (see ``report_once``)."""
    # An exception type that refuses attributes leaves the SDK's Dedupe as the only guard.
    with suppress(Exception):
        setattr(exc, _REPORTED, True)


def report_once(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """One event per exception, whoever captures it first; later captures are dropped.

    Two reporters can see one exception: an SDK integration and our adapter
    both listening to Quart's exception signals, outside any request; the
    middleware re-raising what it reported, which the server then logs
    ("Exception in ASGI application"), sometimes wrapped first (Litestar): with
    the logging integration that is a second event. The SDK's Dedupe misses
    these when the object differs, another error came between, or the default
    integrations are off. A logged exception counts as a duplicate when any
    exception of its chain was reported.
    """
    exc_info = hint.get("exc_info") if hint else None
    exc = exc_info[1] if exc_info else None
    if exc is None:
        return event
    if "log_record" in hint:
        link: BaseException | None = exc
        for _ in range(MAX_CHAIN):
            if link is None:
                break
            if is_reported(link):
                return None
            link = link.__cause__ or link.__context__
    elif is_reported(exc):
        return None
    mark_reported(exc)
    return event
