"""Request context on the app's log records: a ``logging`` filter, a structlog
processor, and the attributes of Sentry's structured logs."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from asgi_sentry_ctx.context.state import current_request

__all__ = ["RequestContextFilter", "add_request_attributes", "add_request_context"]


class RequestContextFilter(logging.Filter):
    """Put ``request_id`` and ``user_id`` on every record that passes through.

    Both are ``None`` outside a request. The user id is the one given to
    [`set_user`][asgi_sentry_ctx.set_user]; user extractors are never called
    per record, so logging stays cheap. Attach it to a handler:

    ```python
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(user_id)s %(message)s"))
    ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        state = current_request()
        if state is None:
            record.request_id = None
            record.user_id = None
        else:
            record.request_id = state.request_id
            user = state.user
            record.user_id = user.get("id") if user else None
        return True


def add_request_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add ``request_id`` (and ``user_id`` when set) to the event dict.

    Values the app bound itself win. Outside a request it adds nothing.
    """
    state = current_request()
    if state is not None:
        event_dict.setdefault("request_id", state.request_id)
        user = state.user
        if user and "id" in user:
            event_dict.setdefault("user_id", user["id"])
    return event_dict


def add_request_attributes(log: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry log hook (``before_send_log``): ``request_id`` (and ``user.id`` when
    set) as attributes of a log sent during a request.

    ``init_sentry`` chains it before the app's own hook. Like the logging
    filter, it never calls a user extractor: a user given to ``set_user``
    reaches the log through the SDK's scope already. Attributes the app set win.
    """
    state = current_request()
    if state is not None:
        attributes = log.setdefault("attributes", {})
        attributes.setdefault("request_id", state.request_id)
        user = state.user
        if user and "id" in user:
            attributes.setdefault("user.id", user["id"])
    return log
