"""The idempotent set-up step that plugs the library's request context into sentry-sdk.

Like an SDK integration's ``setup_once``: run by ``init_sentry`` and by every
middleware's construction, effective once per process. Nothing happens at
import: importing the store alone, say, leaves sentry-sdk as it was.
"""

from __future__ import annotations

import sentry_sdk.integrations.logging
from sentry_sdk.integrations.logging import ignore_logger

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.business import apply_business
from asgi_sentry_ctx.context.processors import register_once
from asgi_sentry_ctx.context.report_once import report_once

__all__ = ["setup_once"]


def setup_once() -> None:
    """Register the global event processors that read request context (business
    fields, one event per exception) and keep the library's own logger out of
    Sentry: out of its events and out of its structured logs."""
    register_once(apply_business)
    register_once(report_once)
    ignore_logger(logger.name)
    # Nor as a structured log: a failing log hook would log about itself.
    # (sentry-sdk releases before structured logs have no such list.)
    for_logs = getattr(sentry_sdk.integrations.logging, "ignore_logger_for_sentry_logs", None)
    if for_logs is not None:
        for_logs(logger.name)
