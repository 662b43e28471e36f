"""Registering the process-wide event processors that read request context, once each.

They are registered on first need (`asgi_sentry_ctx.sentry.hooks.setup_once`,
which ``init_sentry`` and the middleware call, and the first business field
set), never at import: importing a module of the package changes nothing in
sentry-sdk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from sentry_sdk.scope import add_global_event_processor, global_event_processors

if TYPE_CHECKING:
    from sentry_sdk._types import EventProcessor

    from asgi_sentry_ctx._types import Processor

__all__ = ["register_once"]


def register_once(processor: Processor) -> None:
    """Add ``processor`` to sentry-sdk's global event processors unless it is there."""
    if processor not in global_event_processors:
        add_global_event_processor(cast("EventProcessor", processor))
