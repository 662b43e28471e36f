"""The Litestar adapter on a real app with real authentication, served by uvicorn.

Every behaviour that involves errors runs twice: with only our plugin, and with
sentry-sdk's own ``LitestarIntegration`` active too (it auto-enables wherever
Litestar is installed, and has its own ``after_exception`` hook). Litestar's own
``JWTAuth`` and ``SessionAuth``, wired as its docs show, run in three SDK set-ups.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import msgspec
import pytest
import sentry_sdk.integrations.logging
from litestar import Litestar, Request, Response, WebSocket, get, post, websocket
from litestar.background_tasks import BackgroundTask
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.params import FromPath, FromQuery
from litestar.response import Stream
from litestar.security.jwt import JWTAuth, Token
from litestar.security.session_auth import SessionAuth
from litestar.testing import TestClient
from pydantic import BaseModel
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.litestar import LitestarIntegration
from sentry_sdk.integrations.logging import ignore_logger
from websockets.sync.client import connect

from asgi_sentry_ctx import (
    add_breadcrumb,
    capture_message,
    get_request_id,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import SentryInit
from tests.parity import sdk_integrations
from tests.servers import serve

app_logger = logging.getLogger("podcast.upload")


# Users in every shape an auth backend may put in scope["user"].
@dataclass
class DataclassUser:
    id: str
    email: str
    username: str


class PydanticUser(BaseModel):
    id: str
    email: str
    username: str


class MsgspecUser(msgspec.Struct):
    id: str
    email: str
    username: str


class AccountUser:
    """Any object: no ``id``, but ``user_id`` and a display ``name``."""

    def __init__(self, user_id: int, email: str, name: str) -> None:
        self.user_id = user_id
        self.email = email
        self.name = name


# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)

USERS: dict[str, Any] = {
    "t-dict": {"id": "u-dict", "email": "d@example.com", "username": "dee", "roles": ["admin"]},
    "t-dataclass": DataclassUser("u-dataclass", "dc@example.com", "dacey"),
    "t-pydantic": PydanticUser(id="u-pydantic", email="p@example.com", username="pyd"),
    "t-msgspec": MsgspecUser("u-msgspec", "m@example.com", "emmy"),
    "t-object": AccountUser(42, "o@example.com", "olga"),
}
USER_IDS = {
    "t-dict": "u-dict",
    "t-dataclass": "u-dataclass",
    "t-pydantic": "u-pydantic",
    "t-msgspec": "u-msgspec",
    "t-object": "42",
}


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Bearer tokens (header, or ``?token=`` for websockets); no token is anonymous."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
        header = connection.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") or connection.query_params.get("token")
        if not token:
            return AuthenticationResult(user=None, auth=None)
        if token == "crash":
            raise RuntimeError("session store unavailable")
        if token not in USERS:
            raise NotAuthorizedException("unknown token")
        return AuthenticationResult(user=USERS[token], auth=token)


def _upload_context() -> None:
    set_business_context(podcast_id="p-1", action="upload")
    add_breadcrumb("validated", category="upload")


@get("/hello")
async def hello() -> str:
    return "hello"


@get("/boom")
async def boom() -> None:
    _upload_context()
    raise RuntimeError("storage unavailable")


@get("/log")
async def log_error() -> str:
    _upload_context()
    app_logger.error("upload stalled")
    return "logged"


@get("/message")
async def message() -> str:
    _upload_context()
    capture_message("quota almost used", level="warning")
    return "sent"


@get("/request-id")
async def request_id() -> str | None:
    return get_request_id()


@get("/missing")
async def missing() -> None:
    raise NotFoundException("no such episode")


@get("/forbidden")
async def forbidden() -> None:
    raise PermissionDeniedException()


@get("/limited")
async def limited() -> None:
    raise TooManyRequestsException()


@get("/conflict")
async def conflict() -> None:
    raise HTTPException(status_code=409, detail="episode already published")


@get("/unavailable")
async def unavailable() -> None:
    raise ServiceUnavailableException("transcoder down")


@get("/unauthorized")
async def unauthorized() -> None:
    raise NotAuthorizedException()


@get("/rejected-and-logged")
async def rejected_and_logged() -> None:
    try:
        raise ValidationException("bad episode number")
    except ValidationException:
        app_logger.exception("rejected an upload")
        raise


@get("/episodes")
async def find_episode(number: FromQuery[int]) -> int:
    return number


@get("/podcasts/{podcast_id:str}/fail")
async def podcast_failed(podcast_id: FromPath[str]) -> None:
    raise RuntimeError(f"podcast {podcast_id} failed")


@get("/named", name="named-route")
async def named() -> None:
    raise RuntimeError("named route failed")


@websocket("/ws")
async def live(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    text = await socket.receive_text()
    set_business_context(podcast_id="p-ws", action="live")
    add_breadcrumb(f"received {text}", category="live")
    if text == "boom":
        raise RuntimeError("live feed broke")
    capture_message("live message")
    await socket.send_text("ok")
    await socket.close()


HANDLERS = [
    hello,
    boom,
    log_error,
    message,
    request_id,
    missing,
    forbidden,
    limited,
    unauthorized,
    conflict,
    unavailable,
    rejected_and_logged,
    find_episode,
    podcast_failed,
    named,
    live,
]


def make_app(plugin: SentryContextPlugin | None = None, **kwargs: Any) -> Litestar:
    """The app under test; built after Sentry is initialised, as the SDK's integration needs."""
    return Litestar(
        route_handlers=HANDLERS,
        middleware=[TokenAuthMiddleware],
        plugins=[plugin or SentryContextPlugin()],
        **kwargs,
    )


@pytest.fixture(params=["plugin-only", "with-sdk-integration"])
def sentry(request: pytest.FixtureRequest, sentry_init: SentryInit, ingest: SentryIngest) -> Any:
    """``init_sentry`` (noise filter, logging integration) posting to the ingest.

    ``sentry_init`` is requested for its clean-up: it flushes and resets the SDK.
    """

    def init(**options: Any) -> None:
        integrations = [LitestarIntegration()] if request.param == "with-sdk-integration" else []
        options.setdefault("traces_sample_rate", 0.0)
        # sentry-sdk decides once per process whether an integration is set up:
        # put its registry as a fresh process has it, whatever earlier tests did.
        with sdk_integrations([LitestarIntegration], enabled=bool(integrations)):
            assert init_sentry(
                ingest.dsn,
                environment="production",
                auto_enabling_integrations=False,
                transport_queue_size=10_000,
                integrations=integrations,
                **options,
            )
        has_sdk_integration = sentry_sdk.get_client().get_integration(LitestarIntegration)
        assert (has_sdk_integration is not None) is bool(integrations)

    return init


@pytest.fixture
def served(sentry: Callable[..., None]) -> Iterator[Callable[..., httpx.Client]]:
    """Start the app (with Sentry initialised first) under uvicorn; yield a client factory."""
    servers: list[Any] = []
    clients: list[httpx.Client] = []

    def start(*, pii: bool = False, **app_kwargs: Any) -> httpx.Client:
        sentry(**(PII_ALLOWED if pii else {}))
        server = serve(make_app(**app_kwargs))
        url = server.__enter__()
        servers.append(server)
        client = httpx.Client(base_url=url)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def litestar_logger_not_ignored() -> Iterator[None]:
    """Undo an earlier, process-wide ``ignore_logger("litestar")`` for one test."""
    unignore = getattr(sentry_sdk.integrations.logging, "unignore_logger", None)
    if unignore is not None:
        unignore("litestar")
    else:  # older sentry-sdk releases (2.20) have no unignore_logger; the set is all there is
        sentry_sdk.integrations.logging._IGNORED_LOGGERS.discard("litestar")
    yield
    ignore_logger("litestar")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def only_events_before_marker(ingest: SentryIngest, count: int) -> list[dict[str, Any]]:
    """The events sent before a marker captured now: proves none is missing or extra."""
    capture_message("marker")
    events = ingest.wait_for_events(count + 1)
    assert events[-1].get("message") == "marker", [_summary(e) for e in events]
    assert len(events) == count + 1, [_summary(e) for e in events]
    return events[:-1]


def _summary(event: dict[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or []
    return values[-1]["type"] if values else str(event.get("message") or event.get("logentry"))


def crumbs(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.get("category"), c.get("message")) for c in event["breadcrumbs"]["values"]]


def assert_upload_context(
    event: dict[str, Any], request_id: str, user: dict[str, Any] | None, path: str
) -> None:
    assert event["tags"]["request_id"] == request_id
    assert event["tags"]["podcast_id"] == "p-1"
    assert event["tags"]["action"] == "upload"
    assert event["contexts"]["business"] == {"podcast_id": "p-1", "action": "upload"}
    assert event.get("user") == user
    assert crumbs(event)[:2] == [("request", f"GET {path}"), ("upload", "validated")]


class TestErrors:
    def test_handler_exception_is_reported_once_with_full_context(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        response = client.get("/boom", headers={**bearer("t-dict"), "X-Request-ID": "req-boom"})
        assert response.status_code == 500
        assert response.headers["x-request-id"] == "req-boom"
        [event] = only_events_before_marker(ingest, 1)
        assert_upload_context(event, "req-boom", {"id": "u-dict"}, "/boom")
        [exc] = event["exception"]["values"]
        assert (exc["type"], exc["value"]) == ("RuntimeError", "storage unavailable")
        assert exc["mechanism"]["handled"] is False

    def test_logged_error_carries_full_context(self, served: Any, ingest: SentryIngest) -> None:
        client = served()
        response = client.get("/log", headers={**bearer("t-pydantic"), "X-Request-ID": "req-log"})
        assert response.status_code == 200
        [event] = only_events_before_marker(ingest, 1)
        assert event["logentry"]["message"] == "upload stalled"
        assert_upload_context(event, "req-log", {"id": "u-pydantic"}, "/log")

    def test_captured_message_carries_full_context(self, served: Any, ingest: SentryIngest) -> None:
        client = served()
        response = client.get("/message", headers={**bearer("t-msgspec"), "X-Request-ID": "req-m"})
        assert response.status_code == 200
        [event] = only_events_before_marker(ingest, 1)
        assert event["message"] == "quota almost used"
        assert_upload_context(event, "req-m", {"id": "u-msgspec"}, "/message")

    def test_crash_in_auth_middleware_is_reported_once_under_the_response_request_id(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        response = client.get("/hello", headers=bearer("crash"))
        assert response.status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert event["exception"]["values"][0]["value"] == "session store unavailable"
        assert "user" not in event

    def test_exception_logged_by_litestar_in_debug_mode_is_reported_once_as_unhandled(
        self, served: Any, ingest: SentryIngest, litestar_logger_not_ignored: None
    ) -> None:
        client = served(debug=True)
        assert client.get("/boom").status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        [exc] = event["exception"]["values"]
        assert exc["value"] == "storage unavailable"
        assert exc["mechanism"]["handled"] is False

    def test_http_exception_below_500_is_a_response_not_an_error(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        assert client.get("/conflict").status_code == 409
        assert only_events_before_marker(ingest, 0) == []

    def test_http_exception_of_500_and_above_is_reported(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        assert client.get("/unavailable").status_code == 503
        [event] = only_events_before_marker(ingest, 1)
        assert event["exception"]["values"][0]["type"] == "ServiceUnavailableException"

    def test_noise_is_dropped(self, served: Any, ingest: SentryIngest) -> None:
        client = served()
        statuses = [
            client.get("/missing").status_code,
            client.get("/no-such-route").status_code,
            client.get("/forbidden").status_code,
            client.get("/limited").status_code,
            client.get("/unauthorized").status_code,
            client.get("/hello", headers=bearer("forged")).status_code,
            client.get("/episodes", params={"number": "x"}).status_code,
            client.get("/rejected-and-logged").status_code,
        ]
        assert statuses == [404, 404, 403, 429, 401, 401, 400, 400]
        assert only_events_before_marker(ingest, 0) == []

    def test_websocket_error_and_message_carry_their_connections_context(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        base = str(served().base_url).replace("http://", "ws://")
        with connect(
            f"{base}/ws?token=t-dataclass", additional_headers={"X-Request-ID": "ws-1"}
        ) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-1"
            ws.send("hello")
            assert ws.recv() == "ok"
        with connect(f"{base}/ws", additional_headers={"X-Request-ID": "ws-2"}) as ws:
            ws.send("boom")
            with pytest.raises(Exception, match="4500"):
                ws.recv()
        message, error = only_events_before_marker(ingest, 2)
        assert message["message"] == "live message"
        assert message["tags"]["request_id"] == "ws-1"
        assert message["user"] == {"id": "u-dataclass"}
        assert message["contexts"]["business"] == {"podcast_id": "p-ws", "action": "live"}
        assert crumbs(message) == [
            ("request", "WEBSOCKET /ws"),
            ("response", "WEBSOCKET /ws -> 101"),  # accepted
            ("live", "received hello"),
        ]
        assert error["exception"]["values"][0]["value"] == "live feed broke"
        assert error["tags"]["request_id"] == "ws-2"
        assert "user" not in error
        assert error["contexts"]["business"] == {"podcast_id": "p-ws", "action": "live"}


class TestUsers:
    def test_anonymous_request_carries_no_user(self, served: Any, ingest: SentryIngest) -> None:
        client = served(pii=True)
        assert client.get("/message").status_code == 200
        [event] = only_events_before_marker(ingest, 1)
        assert "user" not in event

    @pytest.mark.parametrize("token", list(USERS))
    def test_authenticated_user_of_any_shape_is_exactly_theirs(
        self, served: Any, ingest: SentryIngest, token: str
    ) -> None:
        client = served(pii=True)
        assert client.get("/boom", headers=bearer(token)).status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        user = USERS[token]
        fields = user if isinstance(user, dict) else vars(user) if hasattr(user, "__dict__") else {}
        expected = {
            "id": USER_IDS[token],
            "email": getattr(user, "email", None) or fields["email"],
            "username": getattr(user, "username", None)
            or getattr(user, "name", None)
            or fields["username"],
        }
        # Ours, normalised: never the SDK's copy of the whole dict (its "roles" included).
        assert event["user"] == expected

    def test_email_and_username_stay_home_without_pii(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served(pii=False)
        assert client.get("/boom", headers=bearer("t-dataclass")).status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        assert event["user"] == {"id": "u-dataclass"}

    def test_user_getter_maps_litestar_user(self, served: Any, ingest: SentryIngest) -> None:
        plugin = SentryContextPlugin(user_getter=lambda user: f"acct-{user.user_id}")
        client = served(plugin=plugin)
        assert client.get("/boom", headers=bearer("t-object")).status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        assert event["user"] == {"id": "acct-42"}

    @pytest.mark.parametrize(
        "extractor", [lambda scope: "u-1", None], ids=["extractor", "explicit-none"]
    )
    def test_user_getter_and_user_extractor_are_refused_together(self, extractor: Any) -> None:
        # ``user_extractor=None`` counts too: it used to be accepted, and then
        # silently won over the getter (no user at all).
        with pytest.raises(TypeError, match="pass user_getter or user_extractor, not both"):
            SentryContextPlugin(user_getter=lambda user: user, user_extractor=extractor)

    async def test_concurrent_requests_each_carry_their_own_user(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        base = served().base_url
        tokens = list(USERS) * 6
        async with httpx.AsyncClient(base_url=base) as client:
            responses = await asyncio.gather(
                *(client.get("/message", headers=bearer(token)) for token in tokens)
            )
        by_request_id = {
            r.headers["x-request-id"]: USER_IDS[t] for r, t in zip(responses, tokens, strict=True)
        }
        events = ingest.wait_for_events(len(tokens))
        assert len(events) == len(tokens)
        assert {e["tags"]["request_id"]: e["user"]["id"] for e in events} == by_request_id


class TestTransactionNames:
    def test_error_is_named_by_its_handlers_function_as_sentry_sdk_names_it(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        assert client.get("/podcasts/p-1/fail").status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        assert event["transaction"] == f"{__name__}.podcast_failed"
        assert event["transaction_info"] == {"source": "component"}

    def test_error_in_a_named_route_is_named_by_the_route_name(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served()
        assert client.get("/named").status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        assert (event["transaction"], event["transaction_info"]) == (
            "named-route",
            {"source": "component"},
        )

    def test_websocket_error_is_named_by_its_handler(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        base = str(served().base_url).replace("http://", "ws://")
        with connect(f"{base}/ws") as ws:
            ws.send("boom")
            with pytest.raises(Exception, match="4500"):
                ws.recv()
        [event] = only_events_before_marker(ingest, 1)
        assert (event["transaction"], event["transaction_info"]) == (
            f"{__name__}.live",
            {"source": "component"},
        )

    def test_url_style_names_errors_and_transactions_by_the_path_template(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        assert init_sentry(
            ingest.dsn,
            environment="production",
            traces_sample_rate=1.0,
            auto_enabling_integrations=False,
            transport_queue_size=10_000,
        )
        app = make_app(SentryContextPlugin(transaction_style="url"))
        with TestClient(app) as client:
            assert client.get("/podcasts/p-1/fail").status_code == 500
        [event] = only_events_before_marker(ingest, 1)
        [transaction] = ingest.wait_for_items("transaction", 1)
        for item in (event, transaction):
            assert item["transaction"] == "/podcasts/{podcast_id}/fail"
            assert item["transaction_info"] == {"source": "route"}

    def test_unknown_transaction_style_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"must be one of \('endpoint', 'url'\), not 'path'"):
            SentryContextPlugin(transaction_style="path")


class TestFailedRequestStatusCodes:
    def test_http_exception_with_a_listed_status_is_reported_once(
        self, served: Any, ingest: SentryIngest
    ) -> None:
        client = served(plugin=SentryContextPlugin(failed_request_status_codes={409}))
        assert client.get("/conflict").status_code == 409
        [event] = only_events_before_marker(ingest, 1)
        [exc] = event["exception"]["values"]
        assert (exc["type"], exc["value"]) == ("HTTPException", "episode already published")


class TestRequestIdHeader:
    def test_every_response_carries_a_request_id(self, served: Any) -> None:
        client = served()
        responses = {
            "ok": client.get("/hello"),
            "error": client.get("/boom"),
            "handler 404": client.get("/missing"),
            "routing 404": client.get("/no-such-route"),
            "routing 405": client.post("/hello"),
            "auth 401": client.get("/hello", headers=bearer("forged")),
        }
        for name, response in responses.items():
            assert len(response.headers.get_list("x-request-id")) == 1, name

    def test_routing_404_echoes_a_valid_incoming_request_id(self, served: Any) -> None:
        client = served()
        response = client.get("/no-such-route", headers={"X-Request-ID": "req-404"})
        assert response.status_code == 404
        assert response.headers["x-request-id"] == "req-404"

    def test_handler_sees_the_request_id_it_answers_with(self, served: Any) -> None:
        response = served().get("/request-id")
        assert response.text == response.headers["x-request-id"]


class TestCors:
    ORIGIN = "https://app.example.com"

    def test_request_id_is_exposed_to_browsers_with_the_apps_own_headers(self, served: Any) -> None:
        cors = CORSConfig(allow_origins=[self.ORIGIN], expose_headers=["X-Total-Count"])
        client = served(cors_config=cors)
        response = client.get("/hello", headers={"Origin": self.ORIGIN})
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert exposed == {"x-request-id", "x-total-count"}
        assert response.headers["access-control-allow-origin"] == self.ORIGIN
        assert response.headers["x-request-id"]

    def test_preflight_answer_carries_a_request_id(self, served: Any) -> None:
        client = served(cors_config=CORSConfig(allow_origins=[self.ORIGIN]))
        response = client.options(
            "/hello",
            headers={"Origin": self.ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert response.status_code == 204
        assert response.headers["x-request-id"]

    def test_header_is_not_exposed_when_told_not_to(self, served: Any) -> None:
        plugin = SentryContextPlugin(expose_header=False)
        client = served(plugin=plugin, cors_config=CORSConfig(allow_origins=[self.ORIGIN]))
        response = client.get("/hello", headers={"Origin": self.ORIGIN})
        assert "access-control-expose-headers" not in response.headers


# Litestar's own authentication, wired as Litestar's docs show it:
# ``Litestar(..., on_app_init=[auth.on_app_init])``. Those hooks run before any
# plugin's and put the auth middleware first, ahead of sentry-sdk's.


async def user_from_token(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> dict[str, str]:
    add_breadcrumb("credentials accepted", category="auth")
    return {"id": token.sub}


async def user_from_session(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> dict[str, str] | None:
    add_breadcrumb("credentials accepted", category="auth")
    return {"id": session["user_id"]} if "user_id" in session else None


JWT_AUTH = JWTAuth[dict[str, str]](
    retrieve_user_handler=user_from_token,
    token_secret="test-only-secret-0123456789abcdef",
    exclude=["/sign-in"],
)
SESSION_AUTH = SessionAuth[dict[str, str], ServerSideSessionBackend](
    retrieve_user_handler=user_from_session,
    session_backend_config=ServerSideSessionConfig(),
    exclude=["/sign-in"],
)


@post("/sign-in/{user_id:str}")
async def sign_in(request: Request[Any, Any, Any], user_id: FromPath[str]) -> str:
    request.set_session({"user_id": user_id})
    return "signed in"


@get("/episodes/{episode_id:str}/audio")
async def stream_audio(episode_id: FromPath[str]) -> Stream:
    set_business_context(podcast_id="p-1", episode_id=episode_id, action="stream")
    return Stream(audio_chunks())


async def audio_chunks() -> AsyncIterator[bytes]:
    yield b"ID3"
    raise RuntimeError("transcoder died mid-stream")


@post("/episodes/{episode_id:str}/publish", status_code=202)
async def publish_episode(episode_id: FromPath[str]) -> Response[str]:
    set_business_context(podcast_id="p-1", episode_id=episode_id, action="publish")
    return Response("accepted", background=BackgroundTask(notify_subscribers))


async def notify_subscribers() -> None:
    raise RuntimeError("mailer refused the batch")


@get("/whoami")
async def whoami() -> str:
    capture_message("who am I")
    return "ok"


SDK_SETUPS: dict[str, dict[str, Any]] = {
    # sentry-sdk's LitestarIntegration kept on, next to the plugin.
    "sdk-litestar-on": {"framework_integrations": True},
    # init_sentry's default: the plugin alone owns the request.
    "sdk-litestar-off": {},
    # No SDK integration but the logging one init_sentry adds; no Dedupe either.
    "no-default-integrations": {"default_integrations": False},
}


@pytest.fixture(params=list(SDK_SETUPS))
def sdk_setup(
    request: pytest.FixtureRequest, sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    """``init_sentry`` posting to the ingest, in each SDK set-up.

    ``sentry_init`` is requested for its clean-up: it flushes and resets the SDK.
    """
    sdk_on = request.param == "sdk-litestar-on"
    # sentry-sdk decides once per process whether an integration is set up:
    # put its registry as a fresh process has it, whatever earlier tests did.
    with sdk_integrations([LitestarIntegration], enabled=sdk_on):
        assert init_sentry(
            ingest.dsn,
            environment="production",
            traces_sample_rate=0.0,
            transport_queue_size=10_000,
            **SDK_SETUPS[request.param],
        )
    assert (sentry_sdk.get_client().get_integration(LitestarIntegration) is not None) is sdk_on


@pytest.fixture(params=["jwt", "session"])
def auth(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def signed_in(auth: str, user_id: str) -> Iterator[httpx.Client]:
    """The app with Litestar's ``auth`` wired through ``on_app_init`` and our plugin,
    under uvicorn, and a client signed in as ``user_id``.

    Leaving the block stops the server, which waits for the requests' background
    work: everything the server captured is queued by then.
    """
    config = JWT_AUTH if auth == "jwt" else SESSION_AUTH
    app = Litestar(
        route_handlers=[sign_in, stream_audio, publish_episode, whoami],
        on_app_init=[config.on_app_init],
        plugins=[SentryContextPlugin()],
    )
    with serve(app) as url, httpx.Client(base_url=url) as client:
        if auth == "jwt":
            client.headers["Authorization"] = f"Bearer {JWT_AUTH.create_token(identifier=user_id)}"
        else:
            assert client.post(f"/sign-in/{user_id}").status_code == 201
        yield client


@contextmanager
def uvicorn_error_log() -> Iterator[list[logging.LogRecord]]:
    """The records uvicorn logs on ``uvicorn.error`` while the block runs.

    Enter it once the server runs: uvicorn's logging set-up replaces the handlers.
    """
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addHandler(handler)
    try:
        yield records
    finally:
        uvicorn_logger.removeHandler(handler)


def the_apps_exception(event: dict[str, Any]) -> dict[str, Any]:
    """The event's one RuntimeError, after checking no Litestar wrapper came with it."""
    values = event["exception"]["values"]
    assert "LitestarException" not in [v["type"] for v in values], values
    [exc] = [v for v in values if v["type"] == "RuntimeError"]
    return cast("dict[str, Any]", exc)


def functions(exc: dict[str, Any]) -> list[str]:
    return [frame["function"] for frame in exc["stacktrace"]["frames"]]


@pytest.mark.usefixtures("sdk_setup")
class TestLitestarAuthWiredThroughOnAppInit:
    def test_streaming_body_error_is_one_event_with_the_apps_exception(
        self, auth: str, ingest: SentryIngest
    ) -> None:
        with signed_in(auth, "u-7") as client, client.stream("GET", "/episodes/e-3/audio") as r:
            assert r.status_code == 200  # sent before the body failed
            request_id = r.headers["x-request-id"]
            with pytest.raises(httpx.RemoteProtocolError):
                r.read()
        [event] = only_events_before_marker(ingest, 1)
        exc = the_apps_exception(event)
        assert exc["value"] == "transcoder died mid-stream"
        assert functions(exc)[-1] == "audio_chunks"
        assert event["tags"]["request_id"] == request_id
        assert event["user"] == {"id": "u-7"}
        assert event["contexts"]["business"] == {
            "podcast_id": "p-1",
            "episode_id": "e-3",
            "action": "stream",
        }

    def test_background_task_error_is_one_event_with_the_apps_exception(
        self, auth: str, ingest: SentryIngest
    ) -> None:
        with signed_in(auth, "u-8") as client:
            response = client.post("/episodes/e-4/publish")
        assert response.status_code == 202
        [event] = only_events_before_marker(ingest, 1)
        exc = the_apps_exception(event)
        assert exc["value"] == "mailer refused the batch"
        assert functions(exc)[-1] == "notify_subscribers"
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert event["user"] == {"id": "u-8"}
        assert event["contexts"]["business"]["action"] == "publish"

    def test_breadcrumb_recorded_during_authentication_is_on_the_requests_events(
        self, auth: str, ingest: SentryIngest
    ) -> None:
        with signed_in(auth, "u-9") as client:
            response = client.get("/whoami")
        [event] = only_events_before_marker(ingest, 1)
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert crumbs(event)[:2] == [("request", "GET /whoami"), ("auth", "credentials accepted")]

    def test_uvicorn_logging_the_error_is_no_second_event(self, ingest: SentryIngest) -> None:
        # uvicorn logs what escaped the app at ERROR on ``uvicorn.error``, and
        # init_sentry's logging integration turns ERROR records into events:
        # that record must not become a second event, without ignore_logger.
        with (
            signed_in("jwt", "u-10") as client,
            uvicorn_error_log() as logged,
            client.stream("GET", "/episodes/e-5/audio") as response,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            response.read()
        assert [r.getMessage().strip() for r in logged] == ["Exception in ASGI application"]
        [event] = only_events_before_marker(ingest, 1)
        assert the_apps_exception(event)["value"] == "transcoder died mid-stream"


def test_importing_the_adapter_does_not_import_litestar() -> None:
    code = "import sys, asgi_sentry_ctx.adapters.litestar; print('litestar' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
