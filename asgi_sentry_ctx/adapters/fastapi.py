"""FastAPI: the Starlette adapter, FastAPI's noise, and the user an auth dependency returns.

Most FastAPI apps authenticate in a dependency, after every middleware ran.
:func:`bind_user` puts a small dependency on top of such a dependency, so
that the user it returns becomes the user of that request's events while
FastAPI still solves the dependency itself: its overrides, its worker thread
and its clean-up stay FastAPI's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from asgi_sentry_ctx.adapters.starlette import install as install_starlette
from asgi_sentry_ctx.adapters.support import (
    current_request,
    ignore_exception_types,
    logger,
    set_user,
    user_from,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind_user", "install"]

AppT = TypeVar("AppT", bound="FastAPI")

# One wrapper per dependency, so that ``Depends(bind_user(get_user))`` written
# in several places is one dependency to FastAPI, solved once per request.
_wrappers: WeakKeyDictionary[Any, Callable[..., Awaitable[Any]]] = WeakKeyDictionary()


def install(app: AppT, **options: Any) -> AppT:
    """Run every request of ``app`` through the middleware, outermost; return ``app``.

    The same as :func:`asgi_sentry_ctx.adapters.starlette.install` (the user
    comes from ``scope["user"]`` if the app uses ``AuthenticationMiddleware``,
    else from :func:`bind_user`), and it declares FastAPI's request validation
    errors as noise. Raised ``HTTPException`` 401, 403, 404 and 429 are noise
    by their status code already.
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
    an id-like attribute (see :func:`asgi_sentry_ctx.user_from`); it is read
    only when an event is built, so a request that reports nothing pays for
    no conversion. ``None`` (optional auth, anonymous) binds nothing.
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
        _bind(user)
        return user

    # Not weak-referenceable or not hashable: simply not shared.
    with contextlib.suppress(TypeError):
        _wrappers[dependency] = bound
    return bound


def _bind(user: Any) -> None:
    if user is None:
        return
    state = current_request()
    if state is not None:
        # The request's user, read by the event processor when (if ever) an
        # event is built: turning a pydantic model into Sentry's user costs
        # more than the rest of the binding. An explicit ``set_user`` later
        # in the request still wins, as it does over any extractor.
        state.user_extractor = lambda _scope: user
        state.user = None
        state.user_cleared = False
        return
    # Not under the middleware (no ``install``): the Sentry scope is all there is.
    try:
        found = user_from(user)
        if found is not None:
            set_user(**found)
    except Exception:
        # The request goes on: a user missing from events beats a failed request.
        logger.exception("asgi_sentry_ctx: could not bind the user returned by a dependency")
