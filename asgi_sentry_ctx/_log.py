"""The library's own logger.

The library logs its own failures (a raising extractor, a broken ``before_send``,
a store that cannot write) on the ``asgi_sentry_ctx`` logger. The set-up step
(`asgi_sentry_ctx.sentry.hooks.setup_once`) keeps it out of Sentry: with the
SDK's logging integration a WARNING it logged would otherwise become an event
about the event pipeline itself.
"""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("asgi_sentry_ctx")
