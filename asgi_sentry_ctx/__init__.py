"""Make every Sentry event of an ASGI app carry its request ID, user, business
context and breadcrumbs, with no leak between concurrent requests."""

from asgi_sentry_ctx.context.breadcrumbs import add_breadcrumb
from asgi_sentry_ctx.context.business import business_context, set_business_context
from asgi_sentry_ctx.context.capture import capture_message
from asgi_sentry_ctx.context.failure_reports import (
    Failure,
    register_sink,
    report_failure,
    unregister_sink,
)
from asgi_sentry_ctx.context.log_records import RequestContextFilter, add_request_context
from asgi_sentry_ctx.context.propagation import OutboundPropagation
from asgi_sentry_ctx.context.request_ids import get_request_id, is_valid_request_id
from asgi_sentry_ctx.context.threads import bind_context
from asgi_sentry_ctx.context.users import clear_user, current_user, set_user, user_from
from asgi_sentry_ctx.middleware import SentryContextMiddleware
from asgi_sentry_ctx.sentry.init import init_sentry
from asgi_sentry_ctx.sentry.noise import NoiseFilter, ignore_exception_types
from asgi_sentry_ctx.sentry.scrubbing import scrub_event
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.transport import StoreTransport, store_transport

# The one place the version is written (pyproject.toml reads it; not in __all__).
__version__ = "0.1.0"

__all__ = [
    "EventStore",
    "Failure",
    "NoiseFilter",
    "OutboundPropagation",
    "RequestContextFilter",
    "SentryContextMiddleware",
    "StoreTransport",
    "add_breadcrumb",
    "add_request_context",
    "bind_context",
    "business_context",
    "capture_message",
    "clear_user",
    "current_user",
    "get_request_id",
    "ignore_exception_types",
    "init_sentry",
    "is_valid_request_id",
    "register_sink",
    "report_failure",
    "scrub_event",
    "set_business_context",
    "set_user",
    "store_transport",
    "unregister_sink",
    "user_from",
]
