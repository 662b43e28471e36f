"""Small real Starlette and FastAPI apps with their standard auth, for the adapter tests.

Both apps do the same things on the same paths, so the tests read alike:
``/message`` captures a message, ``/fail`` raises, ``/log`` logs an error (each
after setting business context and a breadcrumb), ``/http-error/{status}``
raises an ``HTTPException`` that the app's own handler reports to Sentry (as
many apps do), and ``/ws`` is a websocket that does the same on request.

Not ``from __future__ import annotations``: FastAPI must evaluate the
dependency annotations declared inside ``fastapi_app``.
"""

import logging
import threading
from typing import Annotated, Any

import pytest
import sentry_sdk
from fastapi import Depends, FastAPI, Header, WebSocket
from fastapi import HTTPException as FastAPIHTTPException
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket
from websockets.sync.client import ClientConnection

import asgi_sentry_ctx.adapters.fastapi as fastapi_adapter
import asgi_sentry_ctx.adapters.starlette as starlette_adapter
from asgi_sentry_ctx import add_breadcrumb, capture_message, set_business_context
from tests.asgi import request

app_logger = logging.getLogger("tests.app")

FRONTEND = "https://app.example.com"
BUSINESS = {"podcast_id": "pod-7", "action": "publish"}


def do_work() -> None:
    """What every handler does before it reports: business context and a breadcrumb."""
    set_business_context(**BUSINESS)
    add_breadcrumb("episode loaded", category="app")


# --- Starlette: AuthenticationMiddleware with a token backend ---------------------------


class Account(BaseUser):
    """A custom user class, as apps with their own user table write them."""

    def __init__(self, account_id: str, email: str) -> None:
        self.account_id = account_id
        self.email = email

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return "Ops team"

    @property
    def identity(self) -> str:
        return self.account_id


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = conn.headers.get("authorization", "").removeprefix("Bearer ")
        if token == "alice-token":
            return AuthCredentials(["authenticated"]), SimpleUser("alice")
        if token == "ops-token":
            return AuthCredentials(["authenticated"]), Account("acct-42", "ops@example.com")
        return None  # AuthenticationMiddleware then sets UnauthenticatedUser


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def message(request: Request) -> Response:
    do_work()
    capture_message("episode viewed")
    return PlainTextResponse("ok")


async def fail(request: Request) -> Response:
    do_work()
    raise RuntimeError("transcoder crashed")


async def log(request: Request) -> Response:
    do_work()
    app_logger.error("quota exceeded for %s", "pod-7")
    return PlainTextResponse("logged")


async def http_error(request: Request) -> Response:
    raise HTTPException(status_code=request.path_params["status"])


async def report_http_error(request: Request, exc: Exception) -> Response:
    sentry_sdk.capture_exception(exc)  # the app reports every HTTP error
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(exc.detail, status_code=exc.status_code)


async def websocket(ws: StarletteWebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        do_work()
        if text == "fail":
            raise RuntimeError("websocket crashed")
        if text == "log":
            app_logger.error("websocket quota exceeded")
        else:
            capture_message("websocket message")
        await ws.send_text("done")


def starlette_app(**install_options: Any) -> Starlette:
    """The Starlette app, with the adapter installed; build it after ``init_sentry``."""
    app = Starlette(
        routes=[
            Route("/", hello),
            Route("/message", message),
            Route("/fail", fail),
            Route("/log", log),
            Route("/http-error/{status:int}", http_error),
            WebSocketRoute("/ws", websocket),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[FRONTEND],
                allow_headers=["Authorization", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
            ),
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
        ],
        exception_handlers={HTTPException: report_http_error},
    )
    return starlette_adapter.install(app, **install_options)


# --- FastAPI: a bearer-token dependency, async or sync ----------------------------------


class User(BaseModel):
    id: str
    email: str
    name: str


USERS = {
    "alice-token": User(id="u-alice", email="alice@example.com", name="Alice"),
    "bob-token": User(id="u-bob", email="bob@example.com", name="Bob"),
}

bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

# Names of the threads the sync dependency ran in.
sync_auth_threads: list[str] = []


def _lookup(token: str | None) -> User:
    if token not in USERS:
        raise FastAPIHTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    return USERS[token]


async def current_user_async(credentials: Credentials) -> User:
    return _lookup(credentials.credentials if credentials else None)


def current_user_sync(credentials: Credentials) -> User:
    sync_auth_threads.append(threading.current_thread().name)
    return _lookup(credentials.credentials if credentials else None)


async def optional_user_async(credentials: Credentials) -> User | None:
    return USERS.get(credentials.credentials) if credentials else None


def optional_user_sync(credentials: Credentials) -> User | None:
    return USERS.get(credentials.credentials) if credentials else None


async def websocket_user_async(authorization: Annotated[str | None, Header()] = None) -> User:
    return _lookup((authorization or "").removeprefix("Bearer "))


def websocket_user_sync(authorization: Annotated[str | None, Header()] = None) -> User:
    return _lookup((authorization or "").removeprefix("Bearer "))


DEPENDENCIES = {
    "async": (current_user_async, optional_user_async, websocket_user_async),
    "sync": (current_user_sync, optional_user_sync, websocket_user_sync),
}


def fastapi_app(dependency_kind: str, **install_options: Any) -> FastAPI:
    """The FastAPI app, its auth dependencies ``"async"`` or ``"sync"``; build it after init."""
    current, optional, websocket_current = DEPENDENCIES[dependency_kind]
    bind_user = fastapi_adapter.bind_user
    CurrentUser = Annotated[User, Depends(bind_user(current))]
    OptionalUser = Annotated[User | None, Depends(bind_user(optional))]
    WebSocketUser = Annotated[User, Depends(bind_user(websocket_current))]

    app = FastAPI()
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[FRONTEND],
        allow_headers=["Authorization", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )

    @app.get("/message")
    async def message(user: CurrentUser) -> dict[str, str]:
        do_work()
        capture_message("episode viewed")
        return {"id": user.id}

    @app.get("/public")
    async def public(user: OptionalUser) -> dict[str, str | None]:
        do_work()
        capture_message("public page viewed")
        return {"id": user.id if user else None}

    @app.get("/fail")
    async def fail(user: CurrentUser) -> None:
        do_work()
        raise RuntimeError("transcoder crashed")

    @app.get("/log")
    async def log(user: CurrentUser) -> None:
        do_work()
        app_logger.error("quota exceeded for %s", "pod-7")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/http-error/{status}")
    async def http_error(status: int) -> None:
        raise FastAPIHTTPException(status)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: WebSocketUser) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            do_work()
            if text == "fail":
                raise RuntimeError("websocket crashed")
            capture_message("websocket message")
            await websocket.send_text(user.id)

    @app.exception_handler(FastAPIHTTPException)
    async def report_http(request: Request, exc: FastAPIHTTPException) -> Response:
        sentry_sdk.capture_exception(exc)  # the app reports every error it sees
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def report_validation(request: Request, exc: RequestValidationError) -> Response:
        sentry_sdk.capture_exception(exc)
        return await request_validation_exception_handler(request, exc)

    return fastapi_adapter.install(app, **install_options)


def handshake_request_id(ws: ClientConnection) -> str:
    """The request ID the server sent on the websocket handshake."""
    assert ws.response is not None
    return str(ws.response.headers["x-request-id"])


# Incoming request IDs the middleware rejects. Each contains the marker, so
# that any trace of one, whole or cut, is found wherever it lands. CR, LF and
# control characters never get past a real server's parser, so these requests
# are made in-process, the way a server would hand them to the app.
HOSTILE_MARKER = "zq7hostile"
HOSTILE_IDS = {
    "crlf": [b"zq7hostile\r\nSet-Cookie: stolen=1"],
    "200-characters": [b"zq7hostile" + b"a" * 190],
    "control-characters": [b"zq7hostile\x00\x1b[31m\x07"],
    "repeated": [b"zq7hostile-1", b"zq7hostile-2"],
}


async def report_with_incoming_ids(app: Any, values: list[bytes]) -> None:
    """A message, a logged error and an exception, each in a request with these IDs
    (the ``/message``, ``/log`` and ``/fail`` routes of both apps here)."""
    headers = [(b"authorization", b"Bearer alice-token")]
    headers += [(b"x-request-id", value) for value in values]
    await request(app, "/message", headers=headers)
    await request(app, "/log", headers=headers)
    with pytest.raises(RuntimeError, match="transcoder crashed"):
        await request(app, "/fail", headers=headers)
