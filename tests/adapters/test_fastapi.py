"""The FastAPI adapter on a real app with a bearer-token dependency, served by uvicorn.

Tests run with the auth dependency ``async`` and ``sync`` (FastAPI runs the
latter in a worker thread), and with sentry-sdk's own FastAPI integration off
and on. (Not ``from __future__ import annotations``: FastAPI evaluates the
annotations of endpoints declared inside tests.)
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.routing import APIRoute
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from asgi_sentry_ctx import capture_message
from asgi_sentry_ctx.adapters.fastapi import bind_user, install
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import ProductionInit, SentryInit
from tests.events import as_json, events_before_marker, message_of
from tests.parity import init_ours
from tests.servers import serve
from tests.starlette_apps import (
    BUSINESS,
    DEPENDENCIES,
    FRONTEND,
    HOSTILE_IDS,
    HOSTILE_MARKER,
    USERS,
    User,
    bearer,
    fastapi_app,
    handshake_request_id,
    report_with_incoming_ids,
    sync_auth_threads,
)

# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)

ALICE = {"authorization": "Bearer alice-token"}
BOB = {"authorization": "Bearer bob-token"}

Init = Callable[..., None]


@pytest.fixture(params=["async", "sync"])
def kind(request: pytest.FixtureRequest) -> str:
    """Whether the app's auth dependencies are ``async def`` or plain ``def``."""
    return str(request.param)


def ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/ws"


def assert_full_context(event: dict[str, Any], request_id: str, path: str) -> None:
    assert event["tags"]["request_id"] == request_id
    assert event["tags"]["podcast_id"] == BUSINESS["podcast_id"]
    assert event["contexts"]["business"] == BUSINESS
    crumbs = [(c.get("category"), c.get("message")) for c in event["breadcrumbs"]["values"]]
    assert crumbs[0] == ("request", f"GET {path}")
    assert ("app", "episode loaded") in crumbs
    assert event["request"]["url"].endswith(path)


class TestUser:
    """The user is whatever the auth dependency returned, bound with ``bind_user``."""

    def test_anonymous_request_carries_no_user(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/public")
        [event] = events_before_marker(ingest)
        assert response.json() == {"id": None}
        assert not event.get("user")

    def test_user_returned_by_the_dependency_reaches_the_event(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-alice"}

    def test_sync_dependency_runs_in_a_worker_thread_and_still_binds(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        sync_auth_threads.clear()
        with serve(fastapi_app("sync")) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=BOB)
        [event] = events_before_marker(ingest)
        [thread] = sync_auth_threads
        assert "AnyIO worker thread" in thread
        assert event["user"] == {"id": "u-bob"}

    def test_email_and_name_are_sent_only_with_pii_allowed(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry(**PII_ALLOWED)
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-alice", "email": "alice@example.com", "username": "Alice"}

    def test_concurrent_requests_each_carry_their_own_user(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        identities = [ALICE, BOB, {}] * 10

        async def burst(url: str) -> None:
            async with httpx.AsyncClient(base_url=url) as client:
                await asyncio.gather(
                    *(
                        client.get("/public", headers={**headers, "X-Request-ID": f"req-{i}"})
                        for i, headers in enumerate(identities)
                    )
                )

        with serve(fastapi_app(kind)) as url:
            asyncio.run(burst(url))
        events = events_before_marker(ingest)
        expected = {"Bearer alice-token": "u-alice", "Bearer bob-token": "u-bob"}
        assert len(events) == len(identities)
        for event in events:
            headers = identities[int(event["tags"]["request_id"].removeprefix("req-"))]
            user_id = expected.get(headers.get("authorization", ""))
            assert (event.get("user") or {}).get("id") == user_id


class TestEvents:
    """Errors, logged errors and messages carry the request's whole context, once."""

    def test_handler_exception_is_reported_once_with_its_context(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/fail", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert response.status_code == 500
        assert event["exception"]["values"][-1]["value"] == "transcoder crashed"
        assert event["user"] == {"id": "u-alice"}
        assert_full_context(event, response.headers["x-request-id"], "/fail")

    def test_exception_is_one_event_with_the_sdk_integration_even_without_dedupe(
        self, sentry_init: SentryInit, ingest: SentryIngest, kind: str
    ) -> None:
        sentry_init(
            default_integrations=False,
            integrations=[StarletteIntegration(), FastApiIntegration()],
        )
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/fail", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert event["user"] == {"id": "u-alice"}

    def test_logged_error_carries_its_context(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/log", headers=BOB)
        [event] = events_before_marker(ingest)
        assert message_of(event) == "quota exceeded for pod-7"
        assert event["user"] == {"id": "u-bob"}
        assert_full_context(event, response.headers["x-request-id"], "/log")

    def test_captured_message_carries_its_context(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["message"] == "episode viewed"
        assert event["user"] == {"id": "u-alice"}
        assert_full_context(event, response.headers["x-request-id"], "/message")


class TestRejectedRequestId:
    """A rejected incoming ID is replaced everywhere, the SDK's own request block included."""

    @pytest.mark.parametrize("hostile", list(HOSTILE_IDS))
    def test_rejected_request_id_reaches_no_event(
        self, sentry: Init, ingest: SentryIngest, hostile: str
    ) -> None:
        sentry()
        asyncio.run(report_with_incoming_ids(fastapi_app("async"), HOSTILE_IDS[hostile]))
        events = events_before_marker(ingest)
        assert len(events) == 3
        for event in events:
            assert HOSTILE_MARKER not in as_json(event)
            assert event["request"]["headers"]["x-request-id"] == event["tags"]["request_id"]


class TestNoise:
    """Reported client errors never reach Sentry: the app here reports every error it sees."""

    def test_request_validation_error_is_noise(self, sentry: Init, ingest: SentryIngest) -> None:
        sentry()
        with serve(fastapi_app("async")) as url, httpx.Client(base_url=url) as client:
            response = client.get("/items/not-a-number")
        assert response.status_code == 422
        assert events_before_marker(ingest) == []

    @pytest.mark.parametrize("status", [401, 403, 404, 429])
    def test_http_exception_with_client_error_status_is_noise(
        self, sentry: Init, ingest: SentryIngest, status: int
    ) -> None:
        sentry()
        with serve(fastapi_app("async")) as url, httpx.Client(base_url=url) as client:
            response = client.get(f"/http-error/{status}")
        assert response.status_code == status
        assert events_before_marker(ingest) == []

    def test_rejected_token_is_noise(self, sentry: Init, ingest: SentryIngest, kind: str) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers={"authorization": "Bearer forged"})
        assert response.status_code == 401
        assert events_before_marker(ingest) == []

    def test_http_exception_with_server_error_status_is_kept(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(fastapi_app("async")) as url, httpx.Client(base_url=url) as client:
            response = client.get("/http-error/503")
        [event] = events_before_marker(ingest)
        assert event["tags"]["request_id"] == response.headers["x-request-id"]


class TestWebsocket:
    def test_websocket_user_from_the_dependency_reaches_its_events(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        with serve(fastapi_app(kind)) as url, connect(ws_url(url), additional_headers=BOB) as ws:
            request_id = handshake_request_id(ws)
            ws.send("message")
            assert ws.recv(timeout=10) == "u-bob"
            ws.send("fail")
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=10)
        message, error = events_before_marker(ingest)
        assert message["message"] == "websocket message"
        assert error["exception"]["values"][-1]["value"] == "websocket crashed"
        for event in (message, error):
            assert event["tags"]["request_id"] == request_id
            assert event["user"] == {"id": "u-bob"}
            assert event["contexts"]["business"] == BUSINESS


class TestCors:
    def test_browsers_can_read_the_request_id_behind_cors(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(fastapi_app("async")) as url, httpx.Client(base_url=url) as client:
            response = client.get("/public", headers={"Origin": FRONTEND})
        assert response.headers["access-control-allow-origin"] == FRONTEND
        assert response.headers["access-control-expose-headers"] == "X-Request-ID"
        assert response.headers["x-request-id"]


class TestBindUser:
    """``bind_user`` keeps what FastAPI sees of the dependency."""

    def test_same_dependency_is_wrapped_once(self) -> None:
        async def get_user() -> dict[str, str]:
            return {"id": "u-1"}

        assert bind_user(get_user) is bind_user(get_user)

    def test_dependency_used_twice_in_a_request_runs_once(self) -> None:
        calls: list[str] = []

        def get_user() -> dict[str, str]:
            calls.append("called")
            return {"id": "u-1"}

        app = FastAPI(dependencies=[Depends(bind_user(get_user))])

        @app.get("/")
        async def index(user: Annotated[dict[str, str], Depends(bind_user(get_user))]) -> str:
            return user["id"]

        response = asyncio.run(request(install(app), "/"))
        assert (response.status, response.body, calls) == (200, b'"u-1"', ["called"])

    def test_openapi_still_shows_the_dependency_security_scheme(self) -> None:
        schema = fastapi_app("async").openapi()
        assert schema["paths"]["/message"]["get"]["security"] == [{"HTTPBearer": []}]

    def test_endpoint_receives_the_object_the_dependency_returned(self) -> None:
        user = {"id": "u-1"}
        received: list[object] = []

        def get_user() -> dict[str, str]:
            return user

        app = FastAPI()

        @app.get("/")
        async def index(bound: Annotated[dict[str, str], Depends(bind_user(get_user))]) -> None:
            received.append(bound)

        asyncio.run(request(install(app), "/"))
        assert received == [user]
        assert received[0] is user

    def test_user_is_read_only_when_an_event_is_built(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        reads: list[str] = []

        class CountedUser:
            def __getattr__(self, name: str) -> str:
                reads.append(name)
                if name == "id":
                    return "u-counted"
                raise AttributeError(name)

        app = FastAPI()

        @app.get("/{action}")
        async def index(
            action: str, user: Annotated[CountedUser, Depends(bind_user(CountedUser))]
        ) -> None:
            if action == "report":
                capture_message("reported")

        asyncio.run(request(install(app), "/quiet"))
        assert reads == []
        asyncio.run(request(app, "/report"))
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-counted"}


def overriding_user(
    x_test_user: Annotated[str, Header()] = "u-fake",
) -> User:
    """What a test puts in place of the auth dependency: the user it names, no token needed."""
    return User(id=x_test_user, email=f"{x_test_user}@example.com", name="Fake")


class TestDependencyOverrides:
    """``app.dependency_overrides[original]`` applies to ``bind_user(original)``."""

    def test_override_of_the_original_dependency_applies(self, kind: str) -> None:
        app = fastapi_app(kind)
        app.dependency_overrides[DEPENDENCIES[kind][0]] = overriding_user
        with serve(app) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message")  # no token: only the override lets it in
        assert (response.status_code, response.json()) == (200, {"id": "u-fake"})

    def test_user_of_the_overriding_dependency_is_bound(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        app = fastapi_app(kind)
        app.dependency_overrides[DEPENDENCIES[kind][0]] = overriding_user
        with serve(app) as url, httpx.Client(base_url=url) as client:
            client.get("/message")
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-fake"}

    def test_dependencies_of_the_override_are_solved(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        app = fastapi_app("async")
        app.dependency_overrides[DEPENDENCIES["async"][0]] = overriding_user
        with serve(app) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers={"X-Test-User": "u-carol"})
        [event] = events_before_marker(ingest)
        assert response.json() == {"id": "u-carol"}
        assert event["user"] == {"id": "u-carol"}


def yielding_app(kind: str, steps: list[str]) -> FastAPI:
    """An app whose auth dependency (``kind``: sync or async) yields the user, then cleans up."""

    def session_user_sync() -> Iterator[dict[str, str]]:
        steps.append("opened")
        yield {"id": "u-session"}
        steps.append("closed")

    async def session_user_async() -> AsyncIterator[dict[str, str]]:
        steps.append("opened")
        yield {"id": "u-session"}
        steps.append("closed")

    dependency = session_user_sync if kind == "sync" else session_user_async
    app = FastAPI()

    @app.get("/")
    async def index(user: Annotated[dict[str, str], Depends(bind_user(dependency))]) -> str:
        steps.append("endpoint")
        capture_message("session used")
        return user["id"]

    return install(app)


class TestYieldingDependency:
    """A dependency that ``yield``s its user is bound, and FastAPI still cleans it up."""

    def test_user_a_yielding_dependency_yields_is_bound(
        self, sentry: Init, ingest: SentryIngest, kind: str
    ) -> None:
        sentry()
        response = asyncio.run(request(yielding_app(kind, []), "/"))
        [event] = events_before_marker(ingest)
        assert response.body == b'"u-session"'
        assert event["user"] == {"id": "u-session"}

    def test_yielding_dependency_is_cleaned_up_after_the_endpoint(self, kind: str) -> None:
        steps: list[str] = []
        response = asyncio.run(request(yielding_app(kind, steps), "/"))
        assert response.status == 200
        assert steps == ["opened", "endpoint", "closed"]


SDK_INTEGRATIONS = [StarletteIntegration, FastApiIntegration]


@pytest.fixture(params=[False, True], ids=["sdk-integration-off", "sdk-integration-on"])
def owner(request: pytest.FixtureRequest, production: ProductionInit) -> Init:
    """``init_sentry`` with sentry-sdk's FastAPI integration off (the default: the
    middleware owns the request) or on (``framework_integrations=True``), traces off."""

    def init(**options: Any) -> None:
        settings = {"traces_sample_rate": 0.0, "transport_queue_size": 10_000, **options}
        init_ours(production, SDK_INTEGRATIONS, framework_integrations=request.param, **settings)

    return init


def routed_app(**install_options: Any) -> FastAPI:
    """Routes behind a prefixed router and ``HTTPException``s no handler of the app reports."""
    app = FastAPI()
    router = APIRouter(prefix="/v2/podcasts")

    @router.post("/{podcast_id}/publish")
    async def publish(podcast_id: int) -> None:
        raise RuntimeError("transcoder crashed")

    @app.get("/status/{status}")
    async def status(status: int, user: Annotated[User, Depends(bind_user(current))]) -> None:
        raise HTTPException(status)

    app.include_router(router)
    return install(app, **install_options)


async def current(credentials: Annotated[Any, Depends(bearer)]) -> User:
    user = USERS.get(credentials.credentials) if credentials else None
    if user is None:
        raise HTTPException(401, "invalid token")
    return user


class TestTransactionNames:
    """Events are named as sentry-sdk's FastAPI integration names them."""

    def test_route_of_a_prefixed_router_is_named_with_the_prefix(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        init_ours(production, SDK_INTEGRATIONS, framework_integrations=False)
        with pytest.raises(RuntimeError):
            asyncio.run(request(routed_app(), "/v2/podcasts/7/publish", method="POST"))
        [event] = events_before_marker(ingest)
        assert event["transaction"] == "/v2/podcasts/{podcast_id}/publish"
        assert event["transaction_info"] == {"source": "route"}

    def test_endpoint_style_names_the_endpoint_function(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        init_ours(production, SDK_INTEGRATIONS, framework_integrations=False)
        app = routed_app(transaction_style="endpoint")
        with pytest.raises(RuntimeError):
            asyncio.run(request(app, "/v2/podcasts/7/publish", method="POST"))
        [event] = events_before_marker(ingest)
        assert event["transaction"] == f"{__name__}.routed_app.<locals>.publish"
        assert event["transaction_info"] == {"source": "component"}


class TestServerErrorHttpException:
    """A raised ``HTTPException`` answered with a 5xx is reported once, as the SDK reports it."""

    def test_raised_503_is_one_event_with_its_request_context(
        self, owner: Init, ingest: SentryIngest
    ) -> None:
        owner()
        with serve(routed_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/status/503", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert response.status_code == 503
        assert event["exception"]["values"][-1]["type"] == "HTTPException"
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert event["transaction"] == "/status/{status}"
        assert event["user"] == {"id": "u-alice"}

    @pytest.mark.parametrize(
        ("path", "headers", "status"),
        [
            ("/status/404", ALICE, 404),
            ("/status/503", {"authorization": "Bearer forged"}, 401),
            ("/status/not-a-number", ALICE, 422),
        ],
        ids=["404", "401-from-the-auth-dependency", "422"],
    )
    def test_client_errors_send_nothing(
        self, owner: Init, ingest: SentryIngest, path: str, headers: dict[str, str], status: int
    ) -> None:
        owner()
        with serve(routed_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get(path, headers=headers)
        assert response.status_code == status
        assert events_before_marker(ingest) == []


def endpoint_dependant(app: FastAPI, path: str) -> Any:
    [route] = [r for r in app.routes if isinstance(r, APIRoute) and r.path == path]
    return route.dependant


class TestBindUserCost:
    """``bind_user`` adds no dependency level: FastAPI solves the original's parameters directly."""

    def test_bound_dependency_has_the_original_sub_dependencies(self) -> None:
        app = FastAPI()

        @app.get("/")
        async def index(user: Annotated[User, Depends(bind_user(current))]) -> None:
            pass

        [bound] = endpoint_dependant(app, "/").dependencies
        assert [sub.call for sub in bound.dependencies] == [bearer]

    def test_string_annotations_are_read_in_the_dependency_module(self) -> None:
        namespace: dict[str, Any] = {}
        exec(  # a module written with ``from __future__ import annotations``
            "from __future__ import annotations\n"
            "from typing import Annotated\n"
            "from fastapi import Header\n"
            "async def token_user(x_token: Annotated[str, Header()]) -> dict[str, str]:\n"
            "    return {'id': x_token}\n",
            namespace,
        )
        app = FastAPI()

        @app.get("/")
        async def index(user: Annotated[Any, Depends(bind_user(namespace["token_user"]))]) -> str:
            return str(user["id"])

        response = asyncio.run(request(install(app), "/", headers=[(b"x-token", b"u-7")]))
        assert (response.status, response.body) == (200, b'"u-7"')

    def test_callable_object_dependency_is_bound(self, sentry: Init, ingest: SentryIngest) -> None:
        sentry()

        class TokenAuth:
            async def __call__(self, x_token: Annotated[str, Header()]) -> dict[str, str]:
                return {"id": x_token}

        app = FastAPI()

        @app.get("/")
        async def index(user: Annotated[Any, Depends(bind_user(TokenAuth()))]) -> None:
            capture_message("seen")

        asyncio.run(request(install(app), "/", headers=[(b"x-token", b"u-obj")]))
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-obj"}


class TestOverridingTheBoundDependency:
    """Overrides keyed by the bound dependency, or set after ``install``, apply and bind too."""

    def test_override_of_the_bound_dependency_itself_applies_and_binds(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        app = fastapi_app("async")
        app.dependency_overrides[bind_user(DEPENDENCIES["async"][0])] = overriding_user
        with serve(app) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers={"X-Test-User": "u-dave"})
        [event] = events_before_marker(ingest)
        assert response.json() == {"id": "u-dave"}
        assert event["user"] == {"id": "u-dave"}

    def test_override_by_a_yielding_dependency_binds_its_user(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()

        def session_user() -> Iterator[User]:
            yield User(id="u-session", email="s@example.com", name="S")

        app = fastapi_app("sync")
        app.dependency_overrides[DEPENDENCIES["sync"][0]] = session_user
        with serve(app) as url, httpx.Client(base_url=url) as client:
            client.get("/message")
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "u-session"}

    def test_overrides_set_after_assigning_a_new_dict_still_apply(self) -> None:
        app = fastapi_app("async")
        assert asyncio.run(request(app, "/message")).status == 401  # the stack is built
        app.dependency_overrides = {}  # how FastAPI's docs reset overrides
        app.dependency_overrides[DEPENDENCIES["async"][0]] = overriding_user
        response = asyncio.run(request(app, "/message"))
        assert (response.status, response.body) == (200, b'{"id":"u-fake"}')

    def test_cleared_overrides_leave_the_original_dependency(self) -> None:
        app = fastapi_app("async")
        app.dependency_overrides[DEPENDENCIES["async"][0]] = overriding_user
        app.dependency_overrides.clear()
        response = asyncio.run(request(app, "/message"))
        assert response.status == 401
