"""The apps of the documented set-ups: one authenticated JSON route per framework.

Each framework's app is written the way its page in ``docs/`` writes it, and
authenticates with that framework's own auth: FastAPI an ``HTTPBearer``
dependency (wrapped in ``bind_user`` in our set-up), Starlette
``AuthenticationMiddleware`` with a token backend, Litestar an
``AbstractAuthenticationMiddleware``, Quart quart-auth in bearer mode. Every
app answers ``GET /me`` with the user's id as JSON when the request carries
the bearer token that ``auth_headers`` returns, and refuses it otherwise, so a
set-up whose auth is miswired fails the run instead of timing a 401.

Sentry must be set up (or not) before an app is built: the SDK's Litestar
integration hooks into ``Litestar.__init__``. No ``from __future__ import
annotations`` here: FastAPI and Litestar read the routes' annotations at run
time, and these name classes local to the builders.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

PATH = "/me"
TOKEN = "alice-token"
USER_ID = "u-alice"
FRAMEWORKS = ("starlette", "fastapi", "litestar", "quart")


@dataclass(frozen=True)
class Layers:
    """What is added to the framework's plain app, as the respective docs add it."""

    ours: bool = False  # our adapter, as docs/<framework>.md shows it
    correlation_id: bool = False  # asgi-correlation-id's middleware, as its README adds it


@dataclass(frozen=True)
class BuiltApp:
    """An app ready to serve, and the headers its requests need to be let in."""

    app: Any
    auth_headers: tuple[tuple[bytes, bytes], ...]


def _bearer(token: str) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"authorization", f"Bearer {token}".encode("latin-1")),)


def starlette_app(layers: Layers) -> BuiltApp:
    """docs/starlette.md: ``AuthenticationMiddleware`` with a token backend, ``install(app)``."""
    from starlette.applications import Starlette
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        BaseUser,
        SimpleUser,
        requires,
    )
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class TokenBackend(AuthenticationBackend):
        async def authenticate(
            self, conn: HTTPConnection
        ) -> tuple[AuthCredentials, BaseUser] | None:
            if conn.headers.get("authorization") == f"Bearer {TOKEN}":
                return AuthCredentials(["authenticated"]), SimpleUser(USER_ID)
            return None

    @requires("authenticated")
    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.user.identity})

    app = Starlette(
        routes=[Route(PATH, me)],
        middleware=[Middleware(AuthenticationMiddleware, backend=TokenBackend())],
    )
    if layers.correlation_id:
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    if layers.ours:
        from asgi_sentry_ctx.adapters.starlette import install

        install(app)
    return BuiltApp(app, _bearer(TOKEN))


def fastapi_app(layers: Layers) -> BuiltApp:
    """docs/fastapi.md: an ``HTTPBearer`` dependency, ``bind_user`` on it, ``install(app)``."""
    from typing import Annotated

    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel

    class User(BaseModel):
        id: str
        email: str

    tokens = {TOKEN: User(id=USER_ID, email="alice@example.com")}
    bearer = HTTPBearer()

    async def get_current_user(
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
    ) -> User:
        user = tokens.get(credentials.credentials)
        if user is None:
            raise HTTPException(401, "invalid token")
        return user

    dependency: Callable[..., Any] = get_current_user
    if layers.ours:
        from asgi_sentry_ctx.adapters.fastapi import bind_user

        # The one line of docs/fastapi.md: the dependency's user is the events' user.
        dependency = bind_user(get_current_user)
    app = FastAPI()

    @app.get(PATH)
    async def me(user: Annotated[User, Depends(dependency)]) -> dict[str, str]:
        return {"id": user.id}

    if layers.correlation_id:
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
    if layers.ours:
        from asgi_sentry_ctx.adapters.fastapi import install

        install(app)
    return BuiltApp(app, _bearer(TOKEN))


def litestar_app(layers: Layers) -> BuiltApp:
    """docs/litestar.md: an ``AbstractAuthenticationMiddleware``, ``SentryContextPlugin()``."""
    from litestar import Litestar, Request, get
    from litestar.connection import ASGIConnection
    from litestar.exceptions import NotAuthorizedException
    from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

    @dataclass
    class Account:
        id: str
        email: str

    accounts = {TOKEN: Account(USER_ID, "alice@example.com")}

    class TokenAuth(AbstractAuthenticationMiddleware):
        async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
            token = connection.headers.get("authorization", "").removeprefix("Bearer ")
            account = accounts.get(token)
            if account is None:
                raise NotAuthorizedException()
            return AuthenticationResult(user=account, auth=token)

    @get(PATH)
    async def me(request: Request[Account, str, Any]) -> dict[str, str]:
        return {"id": request.user.id}

    middleware: list[Any] = [TokenAuth]
    if layers.correlation_id:
        from asgi_correlation_id import CorrelationIdMiddleware

        middleware.insert(0, CorrelationIdMiddleware)
    plugins: list[Any] = []
    if layers.ours:
        from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin

        plugins.append(SentryContextPlugin())
    app = Litestar(route_handlers=[me], middleware=middleware, plugins=plugins)
    return BuiltApp(app, _bearer(TOKEN))


def quart_app(layers: Layers) -> BuiltApp:
    """docs/quart.md: quart-auth in bearer mode, ``@login_required``, ``init_app(app)``."""
    from quart import Quart
    from quart_auth import QuartAuth, current_user, login_required

    app = Quart(__name__)
    app.secret_key = "change-me"
    app.config["QUART_AUTH_MODE"] = "bearer"
    auth = QuartAuth(app)
    if layers.correlation_id:
        from asgi_correlation_id import CorrelationIdMiddleware

        # Quart's hypercorn-typed ASGI callables do not match asgi-correlation-id's mappings.
        middleware = CorrelationIdMiddleware(cast(Any, app.asgi_app))
        app.asgi_app = cast(Any, middleware)  # type: ignore[method-assign]
    if layers.ours:
        from asgi_sentry_ctx.adapters.quart import init_app

        init_app(app)  # after any other asgi_app wrapper, as docs/quart.md says

    @app.get(PATH)
    @login_required
    async def me() -> dict[str, str | None]:
        return {"id": current_user.auth_id}

    return BuiltApp(app, _bearer(auth.dump_token(USER_ID, app=app)))


BUILDERS: dict[str, Callable[[Layers], BuiltApp]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "litestar": litestar_app,
    "quart": quart_app,
}


def build(framework: str, layers: Layers) -> BuiltApp:
    """A fresh app of ``framework`` with ``layers``, as the docs build it."""
    try:
        builder = BUILDERS[framework]
    except KeyError:
        raise ValueError(f"unknown framework {framework!r}") from None
    return builder(layers)
