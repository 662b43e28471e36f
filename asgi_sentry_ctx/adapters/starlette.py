"""Starlette: the middleware around the whole app, and the user ``AuthenticationMiddleware`` found.

Starlette builds its middleware stack on the first request, always with its
``ServerErrorMiddleware`` outermost. Middleware added with ``add_middleware``
runs inside it, so the 500 response it sends for an unhandled exception never
passes through that middleware and carries no request ID.
[`install`][asgi_sentry_ctx.adapters.starlette.install] wraps the built stack
instead: the request ID reaches every response, 500s included, and the app
object stays the app (routes, ``state``, test clients).

It also gives the middleware what sentry-sdk's Starlette integration would
have put on events and transactions: a name from the matched route
(``transaction_style``, ``"url"`` or ``"endpoint"`` as in the SDK) and the
report of a raised ``HTTPException`` answered with a 5xx status.

Nothing here imports Starlette until ``install`` runs: the user is read by
duck typing, so the module costs nothing to import.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakSet

from asgi_sentry_ctx.adapters.support import (
    TransactionNamer,
    declare_http_exceptions,
    logger,
    user_from,
)
from asgi_sentry_ctx.middleware import SentryContextMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["install", "starlette_user", "transaction_namer"]

TRANSACTION_STYLES = ("url", "endpoint")

AppT = TypeVar("AppT", bound="Starlette")

_installed: WeakSet[Any] = WeakSet()


def install(app: AppT, *, transaction_style: str = "url", **options: Any) -> AppT:
    """Run every request of ``app`` through the middleware, outside everything else.

    [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware] goes
    outside everything Starlette puts in the stack, ``ServerErrorMiddleware``
    included, so 500 responses carry the request ID too. ``options`` are the
    middleware's (``header_name``, ``trust_incoming``, ``exclude_paths``...);
    ``user_extractor`` defaults to
    [`starlette_user`][asgi_sentry_ctx.adapters.starlette.starlette_user], and
    ``transaction_namer`` to the
    [`transaction_namer`][asgi_sentry_ctx.adapters.starlette.transaction_namer]
    of ``transaction_style``: ``"url"`` (the route template, sentry-sdk's
    default) or ``"endpoint"`` (the endpoint's qualified name). Starlette's
    ``HTTPException`` (FastAPI's too) raised and answered with a status in the
    middleware's ``failed_request_status_codes`` (5xx) is reported, as
    sentry-sdk's Starlette integration does.
    Call it once, before the app serves its first request; routes and
    middleware added afterwards are still inside. Returns ``app`` itself::

        app = install(Starlette(routes=routes, middleware=middleware))

    Raises:
        ValueError: ``transaction_style`` is not ``"url"`` or ``"endpoint"``.
    """
    if app in _installed:
        raise RuntimeError("asgi_sentry_ctx is already installed on this app")
    if app.middleware_stack is not None:
        raise RuntimeError("install() must run before the app serves its first request")
    from starlette.exceptions import HTTPException

    options.setdefault("user_extractor", starlette_user)
    options.setdefault("transaction_namer", transaction_namer(transaction_style))
    declare_http_exceptions(HTTPException)
    # Built now, so that a wrong option fails here and not on the first request.
    middleware = SentryContextMiddleware(_not_built_yet, **options)
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        if middleware.ids.response_header:
            _warn_if_cors_hides(app, middleware.ids.header_name)
        middleware.app = build()
        return middleware

    # Starlette's extension point for the stack (FastAPI overrides it too),
    # replaced on this one app: no class is patched, and the stack is still
    # built on the first request, around everything the app has by then.
    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    _installed.add(app)
    return app


def starlette_user(scope: MutableMapping[str, Any]) -> dict[str, Any] | None:
    """The user ``AuthenticationMiddleware`` put in ``scope["user"]``, as Sentry's user dict.

    The default ``user_extractor`` of
    [`install`][asgi_sentry_ctx.adapters.starlette.install], called only when an
    event is built. An ``UnauthenticatedUser`` (or any user whose
    ``is_authenticated`` is false) is no user. The id is the user's ``id``
    attribute if it has one, else its ``identity``; a ``SimpleUser``, which
    only has a name, is identified by that name (its ``identity`` raises
    before Starlette 1.0). Email and username are sent only with PII allowed.
    """
    user = scope.get("user")
    if user is None or not _is_authenticated(user):
        return None
    found = user_from(user)
    if found is None:
        try:
            name = user.display_name
        except Exception:
            return None
        if isinstance(name, str) and name:
            found = user_from({"id": name, "username": name})
    return found


def transaction_namer(transaction_style: str = "url") -> TransactionNamer:
    """The middleware's ``transaction_namer`` for a routed Starlette or FastAPI request.

    The names are sentry-sdk's for the same ``transaction_style``:

    - ``"url"``: the matched route's template with source ``"route"``
      (``/podcasts/{podcast_id}/publish``, websocket routes too), prefixed by
      the templates of the mounts (``Mount``) it is under and, on FastAPI, by its
      ``APIRouter`` prefixes;
    - ``"endpoint"``: the endpoint's qualified name (``app.views.publish``),
      source ``"component"``.

    A request that matched no route (a 404) is named by its URL without the
    query string, source ``"url"``, as the SDK names it. Called only when an
    error event is built or a sampled request's transaction ends, with the
    scope Starlette's routing updated in place.

    Raises:
        ValueError: ``transaction_style`` is not ``"url"`` or ``"endpoint"``.
    """
    if transaction_style == "url":
        return _route_name
    if transaction_style == "endpoint":
        return _endpoint_name
    raise ValueError(
        f"asgi_sentry_ctx: transaction_style must be one of {TRANSACTION_STYLES}, "
        f"not {transaction_style!r}"
    )


def _route_name(scope: Scope) -> tuple[str, str] | None:
    route = scope.get("route")
    if route is None:
        return _url_name(scope)
    # FastAPI (0.137+) keeps an included router's route unprefixed in
    # ``scope["route"]``; the prefixed template is its effective route context.
    fastapi = scope.get("fastapi")
    context = fastapi.get("effective_route_context") if isinstance(fastapi, dict) else None
    path = getattr(context, "path", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return _url_name(scope)  # a ``Host`` route has no template: the SDK's choice too
    mounts = _mount_template(scope)
    if getattr(route, "routes", None) is not None:
        # The route is a ``Mount`` (static files, or a mounted app that found
        # no route of its own): its template ends the mounts' already.
        return mounts or path, "route"
    return mounts + path, "route"


def _endpoint_name(scope: Scope) -> tuple[str, str] | None:
    from sentry_sdk.utils import transaction_from_function

    endpoint = scope.get("endpoint")
    name = transaction_from_function(endpoint) if endpoint is not None else None
    if not name:
        return _url_name(scope)
    return name, "component"


def _url_name(scope: Scope) -> tuple[str, str]:
    """The request's URL without its query string, as sentry-sdk names an unrouted request."""
    scheme = scope.get("scheme") or ("http" if scope["type"] == "http" else "ws")
    server = scope.get("server")
    if not server:
        return scope["path"], "url"
    host, port = server[0], server[1] if len(server) > 1 else None
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{scope['path']}", "url"


def _mount_template(scope: Scope) -> str:
    """The templates of the mounts (``Mount``) the request went through (``/orgs/{org}``).

    Starlette's ``Mount`` records only the concrete prefix it matched, in
    ``root_path`` (``app_root_path`` is the root path it started from, and
    is there only once a ``Mount`` matched): walk the router's mounts along
    that prefix to find their templates. Whatever the walk cannot match stays
    concrete.
    """
    start = scope.get("app_root_path")
    if start is None:
        return ""
    rest: str = scope.get("root_path", "")[len(start) :]
    from starlette.routing import Mount

    template = ""
    routes: list[Any] = getattr(scope.get("router"), "routes", [])
    while rest:
        for route in routes:
            match = route.path_regex.match(rest + "/") if isinstance(route, Mount) else None
            if match is not None:
                # The mount matched ``rest`` up to what its ``{path}`` left over.
                rest = "/" + match["path"][:-1] if match["path"] else ""
                template += route.path
                routes = route.routes
                break
        else:
            return template + rest
    return template


def _is_authenticated(user: Any) -> bool:
    try:
        return bool(getattr(user, "is_authenticated", True))
    except Exception:
        return True  # a BaseUser that does not say: let its id decide


def _warn_if_cors_hides(app: Starlette, header_name: str) -> None:
    from starlette.middleware.cors import CORSMiddleware

    for cls, _, kwargs in app.user_middleware:
        if cls is not CORSMiddleware:
            continue
        exposed = {str(name).lower() for name in kwargs.get("expose_headers", ())}
        if header_name.lower() in exposed or (
            "*" in exposed and not kwargs.get("allow_credentials", False)
        ):
            continue
        # CORSMiddleware sets Access-Control-Expose-Headers to its own list,
        # so the response header is there but browser code cannot read it.
        logger.warning(
            "asgi_sentry_ctx: CORSMiddleware does not expose %s, so browsers cannot read "
            "it; add it to CORSMiddleware's expose_headers",
            header_name,
        )


async def _not_built_yet(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the app's middleware stack is not built yet")
