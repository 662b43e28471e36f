"""The FastAPI adapter on a real app with a bearer-token dependency, served by uvicorn.

Tests run with the auth dependency ``async`` and ``sync`` (FastAPI runs the
latter in a worker thread), and with sentry-sdk's own FastAPI integration off
and on. (Not ``from __future__ import annotations``: FastAPI evaluates the
annotations of endpoints declared inside tests.)
"""

import asyncio
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from asgi_sentry_ctx.adapters.fastapi import bind_user, install
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit
from tests.events import events_before_marker
from tests.servers import serve
from tests.starlette_apps import (
    BUSINESS,
    FRONTEND,
    fastapi_app,
    handshake_request_id,
    sync_auth_threads,
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
        sentry(data_collection={"user_info": True})
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
        assert event["logentry"]["formatted"] == "quota exceeded for pod-7"
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

    def test_sync_dependency_stays_sync_and_async_stays_async(self) -> None:
        def sync_user() -> None:
            return None

        async def async_user() -> None:
            return None

        assert not asyncio.iscoroutinefunction(bind_user(sync_user))
        assert asyncio.iscoroutinefunction(bind_user(async_user))

    def test_dependency_that_yields_is_refused(self) -> None:
        def session_user() -> Iterator[dict[str, str]]:
            yield {"id": "u-1"}

        with pytest.raises(TypeError, match="yields"):
            bind_user(session_user)

    def test_return_value_is_passed_through_unchanged(self) -> None:
        user = object()

        def get_user() -> object:
            return user

        assert bind_user(get_user)() is user
