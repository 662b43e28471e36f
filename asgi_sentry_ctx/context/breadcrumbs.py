"""Breadcrumbs: the app's own, and the request's entry and exit crumbs.

Entry and exit crumbs are not written per request: the request only records
when it started and which status it answered, and the crumbs are put in their
place in time when an event is built. A request that captures nothing pays
for no breadcrumb at all, and a crumb trail cleared by an inner SDK middleware
still starts with the request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sentry_sdk

from asgi_sentry_ctx._timestamps import parse_timestamp
from asgi_sentry_ctx.context.state import RequestState

__all__ = ["add_breadcrumb", "add_request_breadcrumbs"]

_EARLIEST = datetime.min.replace(tzinfo=UTC)


def add_breadcrumb(
    message: str,
    *,
    category: str = "default",
    level: str = "info",
    data: dict[str, Any] | None = None,
) -> None:
    """Record a step on the trail of the current request (or job).

    The trail is per request and bounded by the SDK's ``max_breadcrumbs``;
    every event captured later in the request shows it, in order.
    """
    sentry_sdk.add_breadcrumb(message=message, category=category, level=level, data=data or {})


def add_request_breadcrumbs(event: dict[str, Any], state: RequestState) -> None:
    """Keep only the crumbs of ``state``'s request in ``event``, framed by its entry and exit.

    The entry (``GET /path``) and exit (status) crumbs are added only when the
    request has breadcrumbs on; crumbs recorded before the request are dropped
    in every case.
    """
    started = datetime.fromtimestamp(state.started_at, UTC)
    # The request's isolation scope was forked with whatever crumbs were
    # recorded before it (start-up logs, jobs): they are not this request's.
    crumbs = [
        crumb
        for crumb in event.setdefault("breadcrumbs", {}).get("values") or ()
        if _timestamp(crumb) >= started
    ]
    event["breadcrumbs"]["values"] = crumbs
    if not state.breadcrumbs:
        return
    scope = state.asgi_scope
    kind = scope["type"]
    method = scope.get("method", "WEBSOCKET") if kind == "http" else "WEBSOCKET"
    path = scope.get("path", "")
    ours: list[dict[str, Any]] = [
        {
            "type": "http" if kind == "http" else "default",
            "category": "request",
            "level": "info",
            "message": f"{method} {path}",
            "data": {"method": method, "url": path, "request_id": state.request_id},
            "timestamp": started,
        }
    ]
    if state.status is not None and state.ended_at is not None:
        status = state.status
        ours.append(
            {
                "type": "http" if kind == "http" else "default",
                "category": "response",
                "level": "error" if status >= 500 else "warning" if status >= 400 else "info",
                "message": f"{method} {path} -> {status}",
                "data": {"status_code": status},
                "timestamp": datetime.fromtimestamp(state.ended_at, UTC),
            }
        )
    # Ours go first so that a stable sort keeps the entry crumb ahead of
    # app crumbs recorded within the same microsecond.
    crumbs[:0] = ours
    crumbs.sort(key=_timestamp)
    limit = sentry_sdk.get_client().options.get("max_breadcrumbs", 100)
    if len(crumbs) > limit:
        # Keep the entry crumb: without it the trail has no start.
        del crumbs[1 : len(crumbs) - limit + 1]


def _timestamp(crumb: dict[str, Any]) -> datetime:
    # A crumb with no readable time counts as older than the request: it is dropped.
    parsed = parse_timestamp(crumb.get("timestamp"))
    return _EARLIEST if parsed is None else parsed
