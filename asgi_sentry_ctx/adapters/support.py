"""What framework adapters need from the core that users do not.

An adapter module imports from here (and the public API's modules it
re-exports here) and from ``asgi_sentry_ctx.middleware``: one documented
seam, so the core can change behind it. Exports:

- ``report_exception``: report an exception the framework handled itself
  (turned into a 500 response inside the app), once, with the request's context;
- ``unwrap_exceptions``: declare a framework's exception wrapper, so that the
  exception it wraps is reported instead;
- ``RequestIdPolicy``: the middleware's request-ID rules, for responses the
  framework makes outside the middleware;
- ``current_request``: the state of the request in force, for an adapter
  that binds the user lazily;
- ``set_user``, ``user_from`` and ``ignore_exception_types``: the public API's,
  for the adapters' convenience;
- ``logger``: the library's own logger, for the adapters' own failures;
- the ASGI types and ``UserExtractor``.
"""

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx._types import ASGIApp, Message, Receive, Scope, Send, UserExtractor
from asgi_sentry_ctx.context.capture import report_exception, unwrap_exceptions
from asgi_sentry_ctx.context.request_ids import RequestIdPolicy
from asgi_sentry_ctx.context.state import current_request
from asgi_sentry_ctx.context.users import set_user, user_from
from asgi_sentry_ctx.sentry.noise import ignore_exception_types

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "RequestIdPolicy",
    "Scope",
    "Send",
    "UserExtractor",
    "current_request",
    "ignore_exception_types",
    "logger",
    "report_exception",
    "set_user",
    "unwrap_exceptions",
    "user_from",
]
