"""Starlette: the middleware around the whole app, and the user ``AuthenticationMiddleware`` found.

Starlette builds its middleware stack on the first request, always with its
``ServerErrorMiddleware`` outermost. Middleware added with ``add_middleware``
runs inside it, so the 500 response it sends for an unhandled exception never
passes through that middleware and carries no request ID.
[`install`][asgi_sentry_ctx.adapters.starlette.install] wraps the built stack
instead: the request ID reaches every response, 500s included, and the app
object stays the app (routes, ``state``, test clients).

Nothing here imports Starlette until the stack is built: the user is read by
duck typing, so the module costs nothing to import.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakSet

from asgi_sentry_ctx.adapters.support import logger, user_from
from asgi_sentry_ctx.middleware import SentryContextMiddleware

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["install", "starlette_user"]

AppT = TypeVar("AppT", bound="Starlette")

_installed: WeakSet[Any] = WeakSet()


def install(app: AppT, **options: Any) -> AppT:
    """Run every request of ``app`` through the middleware, outside everything else.

    [`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware] goes
    outside everything Starlette puts in the stack, ``ServerErrorMiddleware``
    included, so 500 responses carry the request ID too. ``options`` are the
    middleware's (``header_name``, ``trust_incoming``, ``exclude_paths``...);
    ``user_extractor`` defaults to
    [`starlette_user`][asgi_sentry_ctx.adapters.starlette.starlette_user].
    Call it once, before the app serves its first request; routes and
    middleware added afterwards are still inside. Returns ``app`` itself::

        app = install(Starlette(routes=routes, middleware=middleware))
    """
    if app in _installed:
        raise RuntimeError("asgi_sentry_ctx is already installed on this app")
    if app.middleware_stack is not None:
        raise RuntimeError("install() must run before the app serves its first request")
    options.setdefault("user_extractor", starlette_user)
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
