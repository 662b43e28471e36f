"""Litestar: one plugin installs the middleware, reports the errors Litestar handles itself
and reads the user Litestar's authentication put in ``scope["user"]``::

    from litestar import Litestar

    from asgi_sentry_ctx import init_sentry
    from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin

    init_sentry()
    app = Litestar(route_handlers=[...], plugins=[SentryContextPlugin()])

Litestar is imported when the plugin sets an app up, never when this module is.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.scope import add_global_event_processor
from sentry_sdk.utils import transaction_from_function

from asgi_sentry_ctx.adapters.support import (
    ASGIApp,
    RequestIdPolicy,
    Scope,
    TransactionNamer,
    UserExtractor,
    check_user_source,
    ignore_exception_types,
    report_exception,
    unwrap_exceptions,
)
from asgi_sentry_ctx.middleware import SentryContextMiddleware

if TYPE_CHECKING:
    from litestar.config.app import AppConfig

__all__ = ["SentryContextPlugin", "UserGetter"]

_TRANSACTION_STYLES = ("endpoint", "url")
"""How transactions are named: ``"endpoint"``, the route handler's ``name``
or else its function's dotted path (source ``"component"``), as sentry-sdk's
``LitestarIntegration`` names them; ``"url"``, the route's path template
(``/episodes/{episode_id}``, source ``"route"``)."""

UserGetter = Callable[[Any], Any]
"""Given Litestar's user (``request.user``), return an id, a dict or an object with an id."""


class SentryContextPlugin:
    """A Litestar plugin (``InitPluginProtocol``) that gives every request its Sentry context.

    On ``on_app_init`` it:

    - adds [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware]
      as the outermost route middleware (right inside sentry-sdk's own, when
      its ``LitestarIntegration`` is on: that one goes back to the front when
      an ``on_app_init`` hook, such as ``JWTAuth.on_app_init``, put middleware
      before it), with an exception handler just inside it: an exception
      raised by a deeper middleware (authentication, say) becomes its response
      within the request's context and request ID;
    - reports an exception raised after the response started (a streaming
      body, a background task) as the app raised it, not as the
      ``LitestarException`` wrappers Litestar re-raises it in, one per layer;
    - adds an ``after_exception`` hook that reports each unhandled exception
      once, with the request's context (Litestar turns them into 500 responses
      before any outer middleware could see them). ``HTTPException`` with a
      status outside ``failed_request_status_codes`` (default 500-599, as in
      sentry-sdk's ``LitestarIntegration``) and a client leaving a websocket
      are not errors and are not reported;
    - names events and sampled transactions by the matched route:
      ``transaction_style="endpoint"`` (the default) as sentry-sdk's
      ``LitestarIntegration`` does, by the handler's ``name`` or else its
      function's dotted path (source ``"component"``); ``"url"`` by the
      route's path template (source ``"route"``); any other style is a
      ``ValueError``;
    - adds a ``before_send`` hook that puts a request ID header on responses
      Litestar makes before any route middleware runs (unknown paths, CORS
      preflights);
    - adds the request ID header to ``CORSConfig.expose_headers`` (unless
      ``expose_header=False``) so that browsers let scripts read it;
    - declares Litestar's noise (``ValidationException``, ``NotFoundException``,
      ``NotAuthorizedException``, ``PermissionDeniedException``,
      ``TooManyRequestsException``, ``WebSocketDisconnect``) to the noise filter,
      and keeps the ``litestar`` logger's copy of each exception out of Sentry.

    The user is ``scope["user"]`` as Litestar's authentication middleware set
    it (a dict, dataclass, pydantic model, msgspec struct or any object with
    an ``id``-like attribute), read when an event is built. ``user_getter``
    maps that user to what Sentry should see; ``user_extractor`` (given the
    ASGI scope) replaces the lookup altogether; give one or the other, not
    both (``user_extractor=None`` included: that is no user lookup at all).
    Every other keyword is a
    [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware] option.
    """

    def __init__(
        self,
        *,
        user_getter: UserGetter | None = None,
        failed_request_status_codes: Collection[int] = range(500, 600),
        expose_header: bool = True,
        transaction_style: str = "endpoint",
        **options: Any,
    ) -> None:
        check_user_source(user_getter, options)
        options.setdefault("user_extractor", _scope_user(user_getter))
        options.setdefault("transaction_namer", _transaction_namer(transaction_style))
        self.failed_request_status_codes = frozenset(failed_request_status_codes)
        # One rule for what is a failure: the hook's below, and the middleware's.
        options["failed_request_status_codes"] = self.failed_request_status_codes
        self.options = options
        self.expose_header = expose_header
        # The middleware's request-ID rules, for the responses Litestar makes outside it.
        self._ids = RequestIdPolicy(
            **{name: options[name] for name in _ID_OPTIONS if name in options}
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Install the middleware and hooks on ``app_config``; called by Litestar."""
        _declare_litestar_noise()
        _old_sdk_reports_http_exceptions_as_newer_ones_do()
        _place_middleware(app_config, self.options)
        _report_unhandled_exceptions(app_config, self.failed_request_status_codes)
        ids = self._ids
        if ids.response_header:
            _stamp_responses_made_outside(app_config, ids)
            if self.expose_header:
                _expose_header_to_browsers(app_config, ids)
        return app_config


def _declare_litestar_noise() -> None:
    from litestar.exceptions import (
        NotAuthorizedException,
        NotFoundException,
        PermissionDeniedException,
        TooManyRequestsException,
        ValidationException,
        WebSocketDisconnect,
    )

    ignore_exception_types(
        ValidationException,
        NotFoundException,
        NotAuthorizedException,
        PermissionDeniedException,
        TooManyRequestsException,
        WebSocketDisconnect,
    )
    # Litestar logs an unhandled exception (in debug mode) before the hooks
    # run; with the logging integration that log record would be the
    # event, marked handled. The hook reports it instead, as sentry-sdk's
    # own LitestarIntegration does.
    ignore_logger("litestar")


_old_sdk_checked = False


def _old_sdk_reports_http_exceptions_as_newer_ones_do() -> None:
    """Fallback for older sentry-sdk releases (2.20), whose ``LitestarIntegration``
    takes no ``failed_request_status_codes`` and reports every exception its own
    ``after_exception`` hook sees, a 409 ``HTTPException`` included. There, a
    global event processor drops the SDK's report of any ``HTTPException``: the
    plugin's hook runs first and has reported those its
    ``failed_request_status_codes`` name (the SDK's copy would be dropped as a
    duplicate anyway). Nothing is registered on later releases; once per process."""
    global _old_sdk_checked
    if _old_sdk_checked:
        return
    _old_sdk_checked = True
    try:
        from sentry_sdk.integrations.litestar import LitestarIntegration
    except Exception:  # DidNotEnable: an SDK that cannot integrate this Litestar
        return
    if "failed_request_status_codes" in inspect.signature(LitestarIntegration).parameters:
        return
    from litestar.exceptions import HTTPException

    def drop_sdk_reports_of_http_exceptions(event: Any, hint: dict[str, Any]) -> Any:
        exc_info = hint.get("exc_info")
        if not exc_info or not isinstance(exc_info[1], HTTPException):
            return event
        values = (event.get("exception") or {}).get("values") or [{}]
        mechanism = values[-1].get("mechanism") or {}
        return None if mechanism.get("type") == LitestarIntegration.identifier else event

    add_global_event_processor(drop_sdk_reports_of_http_exceptions)


def _place_middleware(app_config: AppConfig, options: dict[str, Any]) -> None:
    """Ours right inside sentry-sdk's middleware, before the rest in their order."""
    from litestar._asgi.utils import wrap_in_exception_handler

    # A plain function, not a class: sentry-sdk's LitestarIntegration
    # replaces ``__call__`` on middleware classes to trace them, and would
    # patch SentryContextMiddleware for every app in the process.
    def sentry_context_middleware(app: Any) -> Any:
        inner = cast("ASGIApp", wrap_in_exception_handler(app))
        return SentryContextMiddleware(inner, **options)

    # Auth configs insert theirs at the front in ``on_app_init`` hooks, which
    # run before plugins: left there, authentication would run outside both
    # and the SDK's scope fork, inside ours, would drop what it recorded.
    sdk = [m for m in app_config.middleware if _is_sdk_middleware(m)]
    rest = [m for m in app_config.middleware if not _is_sdk_middleware(m)]
    app_config.middleware = [*sdk, sentry_context_middleware, *rest]


def _report_unhandled_exceptions(app_config: AppConfig, failed: frozenset[int]) -> None:
    """Report what Litestar turned into a response, once, as the app raised it."""
    from litestar.exceptions import HTTPException, WebSocketDisconnect

    unwrap_exceptions(_raised_after_response_started)

    async def report_unhandled(exc: Exception, scope: Any) -> None:
        if isinstance(exc, HTTPException) and exc.status_code not in failed:
            return
        if isinstance(exc, WebSocketDisconnect):
            return
        report_exception(exc)

    # First, before sentry-sdk's own hook (its integration, when kept on, puts
    # that one first): the exception's one event is ours, with our mechanism,
    # whatever the SDK's release reports.
    app_config.after_exception.insert(0, report_unhandled)


def _stamp_responses_made_outside(app_config: AppConfig, ids: RequestIdPolicy) -> None:
    """Put a request ID on responses Litestar makes before any route middleware
    runs (unknown paths, CORS preflights)."""
    header = ids.header

    async def stamp_request_id(message: Any, scope: Any) -> None:
        if message["type"] != "http.response.start":
            return
        headers = message.get("headers") or []
        if any(name.lower() == header for name, _ in headers):
            return  # the middleware (or the app) set it: no new ID needed
        message["headers"] = ids.echoed(headers, ids.request_id_for(scope).encode())

    app_config.before_send.append(stamp_request_id)


def _expose_header_to_browsers(app_config: AppConfig, ids: RequestIdPolicy) -> None:
    """Add the request ID header to ``CORSConfig.expose_headers``, if CORS is on."""
    cors = app_config.cors_config
    if cors is None or ids.header.decode() in {name.lower() for name in cors.expose_headers}:
        return
    app_config.cors_config = dataclasses.replace(
        cors, expose_headers=[*cors.expose_headers, ids.header_name]
    )


def _transaction_namer(style: str) -> TransactionNamer:
    """The middleware's ``transaction_namer`` for ``style`` (one of ``_TRANSACTION_STYLES``).

    Litestar routes before any route middleware runs and leaves the matched
    handler and path template in the scope the middleware holds, so naming
    costs nothing until an event or a sampled transaction asks.

    Raises:
        ValueError: ``style`` is not one of ``_TRANSACTION_STYLES``.
    """
    if style == "endpoint":
        return _name_by_endpoint
    if style == "url":
        return _name_by_path_template
    raise ValueError(
        f"asgi_sentry_ctx: transaction_style must be one of {_TRANSACTION_STYLES}, not {style!r}"
    )


def _name_by_endpoint(scope: Scope) -> tuple[str, str] | None:
    # As sentry-sdk's LitestarIntegration names a routed request, so that an
    # issue keeps its transaction whichever of the two reported it.
    handler = scope.get("route_handler")
    if handler is None:
        return None
    if handler.name is not None:
        name = handler.name
    else:
        fn = handler.fn
        # Litestar before 2.8 wrapped the function in a ``Ref``.
        name = transaction_from_function(getattr(fn, "value", fn))
    if not name:
        return _GENERIC_NAME, "route"
    return name, "component"


def _name_by_path_template(scope: Scope) -> tuple[str, str] | None:
    template = scope.get("path_template")
    return (template, "route") if template else None


def _scope_user(user_getter: UserGetter | None) -> UserExtractor:
    if user_getter is None:

        def scope_user(scope: MutableMapping[str, Any]) -> Any:
            return scope.get("user")

        return scope_user

    def mapped_scope_user(scope: MutableMapping[str, Any]) -> Any:
        user = scope.get("user")
        return None if user is None else user_getter(user)

    return mapped_scope_user


def _is_sdk_middleware(middleware: Any) -> bool:
    # sentry-sdk's LitestarIntegration puts its ASGI middleware first; inside
    # it ours reuses its isolation scope instead of forking a second one.
    try:
        from sentry_sdk.integrations.litestar import SentryLitestarASGIMiddleware
    except Exception:  # DidNotEnable: an SDK that cannot integrate this Litestar
        return False
    return middleware is SentryLitestarASGIMiddleware


def _raised_after_response_started(exc: BaseException) -> BaseException | None:
    # Each of Litestar's exception handlers (one per route stack, one inside
    # our middleware, one around the router) re-raises what it caught after
    # the response started as ``LitestarException(...) from exc``. A layer
    # that re-raises ``from None`` (sentry-sdk's ASGI middleware) clears the
    # cause, but not the context: the wrapper was raised while handling it.
    from litestar.exceptions import LitestarException

    if type(exc) is LitestarException and exc.detail == _AFTER_RESPONSE_STARTED:
        return exc.__cause__ or exc.__context__
    return None


_AFTER_RESPONSE_STARTED = "Exception caught after response started"

# sentry-sdk's name for a handler that has neither a name nor a function name.
_GENERIC_NAME = "generic Litestar request"

# The middleware options that make its request-ID policy.
_ID_OPTIONS = ("header_name", "response_header", "trust_incoming", "id_generator", "id_validator")
