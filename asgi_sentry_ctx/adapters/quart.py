"""Quart: ``init_app(app)`` gives every request and websocket its Sentry context.

[`init_app`][asgi_sentry_ctx.adapters.quart.init_app] wraps ``app.asgi_app``
with [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware].
Quart turns an exception raised in a view into a 500 response inside the app,
so no exception ever reaches the middleware. ``init_app`` listens to Quart's
``got_request_exception``, ``got_websocket_exception`` and
``got_background_exception`` signals instead and reports each exception once
(not again when sentry-sdk's own ``QuartIntegration`` captured it too).

Events and sampled transactions are named as sentry-sdk's ``QuartIntegration``
names them: by the matched rule's endpoint (``transaction_style="endpoint"``,
the default) or its URL template (``"url"``), recorded in the request's ASGI
scope when Quart signals the request started.

The user comes from quart-auth's ``current_user.auth_id`` when quart-auth is
installed, or from a ``user_getter`` of yours. A synchronous getter is called
lazily, only when an event is built (inside the request's Quart context); an
async one is awaited once per request, in a ``before_request`` /
``before_websocket`` hook, and the user it returns is read there and then.
Quart, werkzeug and quart-auth are imported only when ``init_app`` runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from asgi_sentry_ctx.adapters.support import (
    Scope,
    TransactionNamer,
    bind_request_user,
    check_user_source,
    ignore_exception_types,
    logger,
    report_exception,
)
from asgi_sentry_ctx.middleware import SentryContextMiddleware

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["UserGetter", "init_app"]

UserGetter = Callable[[], Any] | Callable[[], Awaitable[Any]]
"""Return the current user or ``None``.

Any shape [`user_from`][asgi_sentry_ctx.user_from] reads. Called inside the
request's Quart context, so it may read ``request``, ``g`` or
``quart_auth.current_user``.
"""

_EXTENSION = "asgi_sentry_ctx"

# Where the request's matched werkzeug rule is kept, in the ASGI scope dict
# that the middleware holds and Quart's request shares (``request.scope``).
_RULE = "asgi_sentry_ctx.url_rule"

# How transactions are named, with sentry-sdk's QuartIntegration's sources:
# the rule's endpoint (``"upload"``, ``"blueprint.upload"``) or its
# template (``"/podcasts/<podcast_id>/upload"``).
_SOURCE_FOR_STYLE = {"endpoint": "component", "url": "route"}


def init_app(
    app: Quart,
    *,
    user_getter: UserGetter | None = None,
    transaction_style: str = "endpoint",
    **middleware_options: Any,
) -> SentryContextMiddleware:
    """Give every request and websocket of ``app`` its Sentry context; return the middleware.

    ``middleware_options`` go to
    [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware]
    (header name, ``exclude_paths``...). Without ``user_getter`` the user is
    quart-auth's ``current_user.auth_id`` (when quart-auth is installed and set
    up on ``app``); ``user_extractor`` (given the ASGI scope) replaces the
    lookup instead, and ``user_extractor=None`` turns it off. Give
    ``user_getter`` or ``user_extractor``, not both. Declares werkzeug's
    ``NotFound``, ``Unauthorized``, ``Forbidden``, ``TooManyRequests``,
    ``BadRequest`` and ``UnprocessableEntity`` as noise. Call it once per app.

    ``transaction_style`` names transactions as sentry-sdk's ``QuartIntegration``
    does: ``"endpoint"`` (the default) by the view's endpoint (source
    ``"component"``), ``"url"`` by the URL rule (source ``"route"``).

    Raises:
        ValueError: ``transaction_style`` is neither ``"endpoint"`` nor ``"url"``.
    """
    from quart.signals import (
        got_background_exception,
        got_request_exception,
        got_websocket_exception,
    )
    from werkzeug.exceptions import (
        BadRequest,
        Forbidden,
        NotFound,
        TooManyRequests,
        Unauthorized,
        UnprocessableEntity,
    )

    if _EXTENSION in app.extensions:
        raise RuntimeError("asgi_sentry_ctx: init_app was already called for this app")
    check_user_source(user_getter, middleware_options)
    middleware_options.setdefault("transaction_namer", _transaction_namer(transaction_style))
    ignore_exception_types(
        BadRequest, Forbidden, NotFound, TooManyRequests, Unauthorized, UnprocessableEntity
    )

    if user_getter is None and "user_extractor" not in middleware_options:
        user_getter = _quart_auth_getter()
    if user_getter is not None:
        if inspect.iscoroutinefunction(user_getter):
            resolve = _resolver(user_getter)
            app.before_request(resolve)
            app.before_websocket(resolve)
        else:
            middleware_options["user_extractor"] = _lazy_extractor(user_getter)

    for signal in (got_request_exception, got_websocket_exception, got_background_exception):
        signal.connect(_report, sender=app)
    _record_matched_rules(app)
    # Quart types its ASGI callables with hypercorn's TypedDicts, ours with mappings.
    middleware = SentryContextMiddleware(cast("Any", app.asgi_app), **middleware_options)
    app.asgi_app = cast("Any", middleware)  # type: ignore[method-assign]
    app.extensions[_EXTENSION] = middleware
    return middleware


async def _report(sender: Quart, exception: BaseException, **extra: Any) -> None:
    # An async receiver: Quart would run a sync one in a worker thread.
    report_exception(exception, mechanism="quart")


def _transaction_namer(style: str) -> TransactionNamer:
    if style not in _SOURCE_FOR_STYLE:
        raise ValueError(
            "asgi_sentry_ctx: transaction_style must be one of "
            f"{tuple(_SOURCE_FOR_STYLE)}, not {style!r}"
        )
    source = _SOURCE_FOR_STYLE[style]
    by_endpoint = style == "endpoint"

    def name_from_rule(scope: Scope) -> tuple[str, str] | None:
        rule = scope.get(_RULE)
        if rule is None:  # routing found nothing (a 404, a 405)
            return None
        return (rule.endpoint if by_endpoint else rule.rule), source

    return name_from_rule


def _record_matched_rules(app: Quart) -> None:
    """Keep each request's matched rule in its ASGI scope, for the namer.

    The middleware names a sampled transaction when the request ends, after
    Quart dropped the request context; the scope dict outlives it. Recorded
    on the ``request_started`` and ``websocket_started`` signals, where
    sentry-sdk's ``QuartIntegration`` names the transaction too, so that a
    ``before_request`` hook that answers by itself cannot skip it.
    """
    from quart import request, websocket
    from quart.signals import request_started, websocket_started

    # Each attribute read through Quart's ``request`` proxy costs a context
    # lookup (about 1 µs here): resolve the proxy once per request.
    async def record_request_rule(sender: Quart, **extra: Any) -> None:
        current = cast("Any", request)._get_current_object()
        current.scope[_RULE] = current.url_rule

    async def record_websocket_rule(sender: Quart, **extra: Any) -> None:
        current = cast("Any", websocket)._get_current_object()
        current.scope[_RULE] = current.url_rule

    # Held by the app: blinker keeps only weak references to receivers.
    app.extensions[f"{_EXTENSION}.receivers"] = (record_request_rule, record_websocket_rule)
    request_started.connect(record_request_rule, sender=app)
    websocket_started.connect(record_websocket_rule, sender=app)


def _lazy_extractor(getter: Callable[[], Any]) -> Callable[[MutableMapping[str, Any]], Any]:
    from quart import has_request_context, has_websocket_context

    def extract(asgi_scope: MutableMapping[str, Any]) -> Any:
        # Outside the Quart context (an event built after the view returned)
        # there is no request to ask.
        if has_request_context() or has_websocket_context():
            return getter()
        return None

    return extract


def _resolver(getter: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    async def resolve_user() -> None:
        try:
            user = await getter()
        except Exception:
            # Like a raising user_extractor: the request goes on, without a user.
            logger.exception("asgi_sentry_ctx: user_getter raised; events go without a user")
            return
        # Read now, in the request's Quart context, as the getter's user was.
        bind_request_user(user, lazily=False)

    return resolve_user


def _quart_auth_getter() -> Callable[[], Any] | None:
    try:
        from quart_auth import current_user
    except ImportError:
        return None
    from quart import current_app

    def auth_id() -> Any:
        # ``current_user`` needs a singleton QuartAuth set up on this app.
        if not any(ext.singleton for ext in current_app.extensions.get("QUART_AUTH", ())):
            return None
        return current_user.auth_id

    return auth_id
