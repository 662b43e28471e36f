"""FastAPI: the Starlette adapter, FastAPI's noise, and the user an auth dependency returns.

Most FastAPI apps authenticate in a dependency, after every middleware ran.
[`bind_user`][asgi_sentry_ctx.adapters.fastapi.bind_user] puts a small
dependency on top of such a dependency, so that the user it returns becomes
the user of that request's events while FastAPI still solves the dependency
itself: its overrides, its worker thread and its clean-up stay FastAPI's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from asgi_sentry_ctx.adapters.starlette import install as install_starlette
from asgi_sentry_ctx.adapters.support import bind_request_user, ignore_exception_types

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind_user", "install"]

AppT = TypeVar("AppT", bound="FastAPI")

# One wrapper per dependency, so that ``Depends(bind_user(get_user))`` written
# in several places is one dependency to FastAPI, solved once per request.
_wrappers: WeakKeyDictionary[Any, Callable[..., Awaitable[Any]]] = WeakKeyDictionary()


def install(app: AppT, **options: Any) -> AppT:
    """Run every request of ``app`` through the middleware, outermost; return ``app``.

    The same as [`starlette.install`][asgi_sentry_ctx.adapters.starlette.install]
    (the user comes from ``scope["user"]`` if the app uses
    ``AuthenticationMiddleware``, else from
    [`bind_user`][asgi_sentry_ctx.adapters.fastapi.bind_user]), and it declares
    FastAPI's request validation errors as noise. Raised ``HTTPException``
    401, 403, 404 and 429 are noise by their status code already.
    """
    from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError

    ignore_exception_types(RequestValidationError, WebSocketRequestValidationError)
    return install_starlette(app, **options)


def bind_user(dependency: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A dependency returning what ``dependency`` returns, bound as the request's user.

    One line where the dependency is declared::

        CurrentUser = Annotated[User, Depends(bind_user(get_current_user))]

    Its one parameter is ``Depends(dependency)``: FastAPI solves
    ``dependency`` as it would without us (sub-dependencies and security
    schemes, a plain ``def`` in a worker thread, the clean-up of one that
    ``yield``s, and ``app.dependency_overrides[dependency]``, whose user is
    then the one bound), and a plain ``Depends(dependency)`` elsewhere in the
    request shares its result.

    The user may be a pydantic model, a dataclass, a dict or any object with
    an id-like attribute (see [`user_from`][asgi_sentry_ctx.user_from]); it is
    read only when an event is built, so a request that reports nothing pays
    for no conversion. ``None`` (optional auth, anonymous) binds nothing.
    """
    try:
        return _wrappers[dependency]
    except (KeyError, TypeError):
        pass
    from fastapi import Depends

    solved = Depends(dependency)

    # ``async``, whatever the dependency's kind: it only records an object,
    # so it runs on the event loop instead of taking a worker thread.
    async def bound(user: Any = solved) -> Any:
        bind_request_user(user)
        return user

    # Not weak-referenceable or not hashable: simply not shared.
    with contextlib.suppress(TypeError):
        _wrappers[dependency] = bound
    return bound
