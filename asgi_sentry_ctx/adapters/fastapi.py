"""FastAPI: the Starlette adapter, FastAPI's noise, and the user an auth dependency returns.

Most FastAPI apps authenticate in a dependency, after every middleware ran.
[`bind_user`][asgi_sentry_ctx.adapters.fastapi.bind_user] makes the user such
a dependency returns the user of that request's events, while FastAPI still
solves the dependency itself: its sub-dependencies, its worker thread and its
clean-up stay FastAPI's.

It costs a few Python calls per request (about 1 µs), not a dependency
level. A wrapper dependency with ``Depends(dependency)`` as its parameter
would be simplest, but FastAPI solves every level with the whole of
``solve_dependencies`` (about 10 µs and 85 calls per request here). So the dependency
``bind_user`` returns *is* the original to FastAPI: the same signature (FastAPI
solves its parameters directly) and the same kind (``async``, plain ``def``
for a worker thread, generator for clean-up), calling the original and
binding what it returns. One thing FastAPI then cannot know is that an
override of the original applies to it: ``install`` teaches the app's
``dependency_overrides`` that (and teaches it again before a request if
the app assigned a new dict).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from asgi_sentry_ctx.adapters.starlette import install as install_starlette
from asgi_sentry_ctx.adapters.support import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    bind_request_user,
    ignore_exception_types,
)
from asgi_sentry_ctx.middleware import SentryContextMiddleware

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["bind_user", "install"]

AppT = TypeVar("AppT", bound="FastAPI")

# One bound dependency per dependency, so that ``Depends(bind_user(get_user))``
# written in several places is one dependency to FastAPI, solved once per request.
_bound: WeakKeyDictionary[Any, Callable[..., Any]] = WeakKeyDictionary()
# And back, for ``dependency_overrides``: bound dependency -> original.
_originals: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


def install(app: AppT, **options: Any) -> AppT:
    """Run every request of ``app`` through the middleware, outermost; return ``app``.

    The same as [`starlette.install`][asgi_sentry_ctx.adapters.starlette.install]
    (``transaction_style`` included; the user comes from ``scope["user"]`` if
    the app uses ``AuthenticationMiddleware``, else from
    [`bind_user`][asgi_sentry_ctx.adapters.fastapi.bind_user]), and it declares
    FastAPI's request validation errors as noise. Raised ``HTTPException``
    401, 403, 404 and 429 are noise by their status code already; 5xx ones
    are reported.

    ``app.dependency_overrides`` becomes a dict that applies an override of
    ``dependency`` to ``bind_user(dependency)`` too, binding the overriding
    user; a dict assigned to it later (``app.dependency_overrides = {}``, as
    FastAPI's docs reset it) is made one again before the next request.
    """
    from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError

    ignore_exception_types(RequestValidationError, WebSocketRequestValidationError)
    installed = install_starlette(app, **options)
    app.dependency_overrides = _BindingOverrides(app.dependency_overrides)
    build = app.build_middleware_stack  # the Starlette adapter's: the middleware, outermost

    def build_middleware_stack() -> ASGIApp:
        middleware = build()
        # Only apps of a process that binds users pay for the check.
        if _bound and isinstance(middleware, SentryContextMiddleware):
            middleware.app = _KeepOverridesBinding(app, middleware.app)
        return middleware

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    return installed


def bind_user(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """A dependency returning what ``dependency`` returns, bound as the request's user.

    One line where the dependency is declared::

        CurrentUser = Annotated[User, Depends(bind_user(get_current_user))]

    To FastAPI it is ``dependency`` itself: the same parameters
    (sub-dependencies and security schemes, shown in OpenAPI too), a plain
    ``def`` still runs in a worker thread, one that ``yield``s is still
    cleaned up after the response. ``app.dependency_overrides[dependency]``
    applies to it (after [`install`][asgi_sentry_ctx.adapters.fastapi.install]),
    and the overriding dependency's user is the one bound. Use the bound one
    wherever the request needs the user: a plain ``Depends(dependency)``
    elsewhere is another dependency to FastAPI, solved again.

    The user may be a pydantic model, a dataclass, a dict or any object with
    an id-like attribute (see [`user_from`][asgi_sentry_ctx.user_from]); it is
    read only when an event is built, so a request that reports nothing pays
    for no conversion. ``None`` (optional auth, anonymous) binds nothing.
    """
    if _lookup(_originals, dependency) is not None:
        return dependency  # bound already
    bound: Callable[..., Any] | None = _lookup(_bound, dependency)
    if bound is None:
        bound = _bind(dependency)
        # Not weak-referenceable or not hashable: simply not shared.
        with contextlib.suppress(TypeError):
            _bound[dependency] = bound
            _originals[bound] = dependency
    return bound


def _lookup(table: WeakKeyDictionary[Any, Any], key: Any) -> Any:
    try:
        return table.get(key)
    except TypeError:
        return None  # not hashable, or not weak-referenceable


def _bind(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """``dependency``'s stand-in: its signature and kind, binding its result."""
    signature = _signature(dependency)
    if signature is None:
        return _bound_by_a_level(dependency)
    bound = _stand_in(dependency)
    bound.__signature__ = signature  # type: ignore[attr-defined]
    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError):
            setattr(bound, name, getattr(dependency, name))
    return bound


def _signature(dependency: Callable[..., Any]) -> inspect.Signature | None:
    """``dependency``'s signature with its annotations evaluated, or ``None`` if
    the stand-in cannot have it.

    Evaluated here, against the dependency's own module: FastAPI would
    evaluate string annotations (``from __future__ import annotations``)
    against the stand-in's. A forward reference not defined yet, a security
    scheme object (FastAPI reads its type for OpenAPI) or a callable without
    a signature keeps the wrapper level instead, slower but right.
    """
    from fastapi.security.base import SecurityBase

    if isinstance(dependency, SecurityBase):
        return None
    try:
        return inspect.signature(dependency, eval_str=True)
    except (NameError, TypeError, ValueError, SyntaxError):
        return None


def _stand_in(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """A function of ``dependency``'s kind, which FastAPI treats as it would treat it
    (its checks, in its order: generators first, then coroutines)."""
    if _is(inspect.isasyncgenfunction, dependency):

        async def bound_async_generator(**values: Any) -> AsyncIterator[Any]:
            async with contextlib.asynccontextmanager(dependency)(**values) as user:
                bind_request_user(user)
                yield user

        return bound_async_generator
    if _is(inspect.isgeneratorfunction, dependency):

        def bound_generator(**values: Any) -> Iterator[Any]:
            with contextlib.contextmanager(dependency)(**values) as user:
                bind_request_user(user)
                yield user

        return bound_generator
    if _is(inspect.iscoroutinefunction, dependency):

        async def bound_async(**values: Any) -> Any:
            user = await dependency(**values)
            bind_request_user(user)
            return user

        return bound_async

    # A plain ``def`` (or class): FastAPI runs it in a worker thread, and
    # this with it. The binding reaches the request from there: the thread
    # runs in a copy of the request's context, which holds the same request.
    def bound_sync(**values: Any) -> Any:
        user = dependency(**values)
        bind_request_user(user)
        return user

    return bound_sync


def _is(kind: Callable[[Any], bool], dependency: Callable[..., Any]) -> bool:
    """Whether ``dependency`` is of ``kind`` as FastAPI decides it: the callable or
    what it wraps, or else the ``__call__`` of a callable object (a class is
    called to make an instance: a plain call)."""
    if inspect.isclass(dependency):
        return False
    target: Any = dependency
    if not (inspect.isroutine(dependency) or isinstance(dependency, partial)):
        target = getattr(dependency, "__call__", dependency)  # noqa: B004
    return kind(target) or kind(inspect.unwrap(target))


def _bound_by_a_level(dependency: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """The wrapper dependency, one level above ``dependency`` (about 10 µs more
    per request): for the dependencies a stand-in cannot mimic."""
    from fastapi import Depends

    solved = Depends(dependency)

    # ``async``, whatever the dependency's kind: it only records an object,
    # so it runs on the event loop instead of taking a worker thread.
    async def bound(user: Any = solved) -> Any:
        bind_request_user(user)
        return user

    return bound


class _BindingOverrides(dict[Any, Any]):
    """``app.dependency_overrides`` that also overrides the bound dependencies.

    FastAPI looks an override up by the dependency it solves
    (``dependency_overrides.get(call, call)``) only when the dict is not
    empty. For ``bind_user(get_user)`` an override of ``get_user`` (or of
    the bound one) applies, bound in turn, so the overriding user is the
    request's.
    """

    def get(self, key: Any, default: Any = None) -> Any:
        original = _lookup(_originals, key)
        if original is None:
            return super().get(key, default)
        override = super().get(key)
        if override is None:
            override = super().get(original)
        return default if override is None else bind_user(override)


class _KeepOverridesBinding:
    """Before each request, make ``app.dependency_overrides`` a ``_BindingOverrides``
    again if a plain dict replaced it: FastAPI's docs reset overrides by
    assigning ``{}``, and the overrides set after that must still apply to
    the bound dependencies. A type check per request (the app's own layer,
    under the middleware)."""

    def __init__(self, fastapi: FastAPI, app: ASGIApp) -> None:
        self.fastapi = fastapi
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        overrides = self.fastapi.dependency_overrides
        if type(overrides) is not _BindingOverrides:
            self.fastapi.dependency_overrides = _BindingOverrides(overrides)
        await self.app(scope, receive, send)
