"""The per-request event processor: everything a request adds to an event, computed lazily.

It runs only when an event is built inside the request (or in work that
carries the request's Sentry scope), so a request that captures nothing never
pays for request data, user resolution or breadcrumbs.
"""

from __future__ import annotations

from typing import Any

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.breadcrumbs import add_request_breadcrumbs
from asgi_sentry_ctx.context.request_data import request_data
from asgi_sentry_ctx.context.state import RequestState
from asgi_sentry_ctx.context.traces import name_event
from asgi_sentry_ctx.context.users import request_user

__all__ = ["enrich_event"]

# The ASGI scope types that are requests (a task's state has none of these).
_REQUESTS = frozenset({"http", "websocket"})


def enrich_event(
    state: RequestState, event: dict[str, Any], hint: dict[str, Any]
) -> dict[str, Any] | None:
    """Add ``state``'s request ID, user, request data, transaction name and
    request crumbs to ``event``.

    Drops (returns ``None`` for) a second event for an exception the request
    reported already, so an error is one event even without the SDK's
    ``DedupeIntegration``. Never raises: a failure here (a raising user
    extractor, say) is logged and the event goes on with what could be added.
    """
    exc_info = hint.get("exc_info") if hint else None
    if exc_info and exc_info[1] is not None:
        if state.reported is exc_info[1]:
            # A second capture of an exception this request reported already:
            # a framework that logs what it handled (Quart) plus the logging
            # integration, or two integrations, without the SDK's Dedupe.
            return None
        # Whoever captured this exception (possibly the SDK's own integration
        # inside us), it is reported: the middleware must not report it again
        # (``report_once`` marked it too, where it takes a mark).
        state.reported = exc_info[1]
    tags = event.setdefault("tags", {})
    tags["request_id"] = state.request_id
    if state.id_source is not None:
        tags["request_id.source"] = state.id_source
    _apply_user(event, state)
    if not event.get("request") and state.asgi_scope["type"] in _REQUESTS:
        try:
            event["request"] = request_data(state.asgi_scope)
        except Exception:
            logger.exception("asgi_sentry_ctx: could not read request data for an event")
    if event.get("type") != "transaction":
        try:
            name_event(event, state)
        except Exception:
            logger.exception("asgi_sentry_ctx: could not name an event's transaction")
        try:
            add_request_breadcrumbs(event, state)
        except Exception:
            logger.exception("asgi_sentry_ctx: could not add request breadcrumbs to an event")
    return event


def _apply_user(event: dict[str, Any], state: RequestState) -> None:
    if state.user_cleared:
        event.pop("user", None)
        return
    user = request_user(state)
    if user is not None:
        # Ours wins over a partial user an SDK integration may have set.
        event["user"] = user
