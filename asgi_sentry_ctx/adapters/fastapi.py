"""FastAPI: the Starlette adapter, FastAPI's noise, and the user an auth dependency returns.

Most FastAPI apps authenticate in a dependency, after every middleware ran,
and FastAPI runs a sync dependency in a worker thread. :func:`bind_user` wraps
such a dependency so that the user it returns is attached to the events of
that request, wherever the dependency ran: the request's state is one shared
object, so a worker thread's write reaches it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from weakref import WeakKeyDictionary

from asgi_sentry_ctx.adapters.starlette import install as install_starlette
from asgi_sentry_ctx.logs import logger
from asgi_sentry_ctx.noise import ignore_exception_types
from asgi_sentry_ctx.users import set_user, user_from

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind_user", "install"]

AppT = TypeVar("AppT", bound="FastAPI")
D = TypeVar("D", bound=Callable[..., Any])

# One wrapper per dependency, so that ``Depends(bind_user(get_user))`` written
# in several places is one dependency to FastAPI, solved once per request.
_wrappers: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()
_ASSIGNED = ("__module__", "__name__", "__qualname__", "__doc__")


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


def bind_user(dependency: D) -> D:
    """Wrap an auth dependency so that the user it returns is the user of the request's events.

    One line where the dependency is declared::

        CurrentUser = Annotated[User, Depends(bind_user(get_current_user))]

    The wrapper has the dependency's signature and kind (``async def`` or plain
    ``def``, which FastAPI still runs in a worker thread) and returns what it
    returns. The user may be a pydantic model, a dataclass, a dict or any
    object with an id-like attribute (see :func:`asgi_sentry_ctx.user_from`);
    ``None`` (optional auth, anonymous) binds nothing. Dependencies that
    ``yield`` are not supported: call :func:`asgi_sentry_ctx.set_user` inside those.
    """
    try:
        return cast("D", _wrappers[dependency])
    except (KeyError, TypeError):
        pass
    if _is_generator(dependency):
        raise TypeError(
            "bind_user() cannot wrap a dependency that yields; call "
            "asgi_sentry_ctx.set_user() inside it instead"
        )
    bound: Callable[..., Any]
    if _is_async(dependency):
        call_async = cast("Callable[..., Awaitable[Any]]", dependency)

        async def bound(*args: Any, **kwargs: Any) -> Any:
            user = await call_async(*args, **kwargs)
            _bind(user)
            return user

    else:

        def bound(*args: Any, **kwargs: Any) -> Any:
            user = dependency(*args, **kwargs)
            _bind(user)
            return user

    # ``__wrapped__`` is how FastAPI finds the parameters (and so the
    # sub-dependencies, security schemes and annotations) of the original.
    functools.update_wrapper(bound, dependency, assigned=_ASSIGNED, updated=())
    # Not weak-referenceable or not hashable: simply not shared.
    with contextlib.suppress(TypeError):
        _wrappers[dependency] = bound
    return cast("D", bound)


def _bind(user: Any) -> None:
    try:
        found = user_from(user)
        if found is not None:
            set_user(**found)
    except Exception:
        # The request goes on: a user missing from events beats a failed request.
        logger.exception("asgi_sentry_ctx: could not bind the user returned by a dependency")


def _is_async(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004  # a callable instance (a security class)
    )


def _is_generator(call: Any) -> bool:
    dunder_call = getattr(call, "__call__", None)  # noqa: B004
    return any(
        inspect.isgeneratorfunction(c) or inspect.isasyncgenfunction(c) for c in (call, dunder_call)
    )
