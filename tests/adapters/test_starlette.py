"""The Starlette adapter on a real app with AuthenticationMiddleware, served by uvicorn.

Every test that reports runs twice: with sentry-sdk's own Starlette
integration off, and on (it patches Starlette and wraps the app in the SDK's
ASGI middleware, as it does by itself whenever Starlette is installed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.starlette import StarletteIntegration
from starlette.applications import Starlette
from starlette.authentication import BaseUser, SimpleUser, UnauthenticatedUser
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.adapters.starlette import install, starlette_user
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import http_scope, request
from tests.conftest import ProductionInit, SentryInit
from tests.events import as_json, events_before_marker, message_of
from tests.parity import init_ours
from tests.servers import serve
from tests.starlette_apps import (
    BUSINESS,
    FRONTEND,
    HOSTILE_IDS,
    HOSTILE_MARKER,
    TokenBackend,
    fail,
    handshake_request_id,
    log,
    message,
    report_with_incoming_ids,
    starlette_app,
)

# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)

ALICE = {"authorization": "Bearer alice-token"}
OPS = {"authorization": "Bearer ops-token"}

Init = Callable[..., None]


def assert_full_context(event: dict[str, Any], request_id: str, path: str) -> None:
    """The event carries its request's ID, business context and breadcrumb trail."""
    assert event["tags"]["request_id"] == request_id
    assert event["tags"]["podcast_id"] == BUSINESS["podcast_id"]
    assert event["contexts"]["business"] == BUSINESS
    crumbs = [(c.get("category"), c.get("message")) for c in event["breadcrumbs"]["values"]]
    assert crumbs[0] == ("request", f"GET {path}")
    assert ("app", "episode loaded") in crumbs
    assert event["request"]["url"].endswith(path)


class TestUser:
    """The user comes from ``scope["user"]``, as AuthenticationMiddleware set it."""

    def test_anonymous_request_carries_no_user(self, sentry: Init, ingest: SentryIngest) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            client.get("/message")
        [event] = events_before_marker(ingest)
        assert not event.get("user")

    def test_simple_user_is_identified_by_its_name(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "alice"}

    def test_custom_user_is_identified_by_its_identity(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=OPS)
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "acct-42"}

    def test_email_and_display_name_are_sent_only_with_pii_allowed(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry(**PII_ALLOWED)
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=OPS)
        [event] = events_before_marker(ingest)
        assert event["user"] == {
            "id": "acct-42",
            "email": "ops@example.com",
            "username": "Ops team",
        }

    def test_our_user_wins_over_the_sdk_partial_one(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        # With user info allowed, the SDK's integration sets {"username": "alice"} from the
        # same SimpleUser: an event user without an id.
        sentry(**PII_ALLOWED)
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "alice", "username": "alice"}

    def test_user_is_found_when_an_invalid_request_id_is_replaced(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        # The middleware then rewrites the scope's headers: the user
        # AuthenticationMiddleware puts in that scope must still be read.
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers={**ALICE, "X-Request-ID": "bad id!"})
        [event] = events_before_marker(ingest)
        assert event["user"] == {"id": "alice"}
        assert event["tags"]["request_id"] == response.headers["x-request-id"] != "bad id!"

    def test_concurrent_requests_each_carry_their_own_user(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        identities = [ALICE, OPS, {}] * 10

        async def burst(url: str) -> None:
            async with httpx.AsyncClient(base_url=url) as client:
                await asyncio.gather(
                    *(
                        client.get("/message", headers={**headers, "X-Request-ID": f"req-{i}"})
                        for i, headers in enumerate(identities)
                    )
                )

        with serve(starlette_app()) as url:
            asyncio.run(burst(url))
        events = events_before_marker(ingest)
        expected = {"Bearer alice-token": "alice", "Bearer ops-token": "acct-42"}
        assert len(events) == len(identities)
        for event in events:
            headers = identities[int(event["tags"]["request_id"].removeprefix("req-"))]
            user_id = expected.get(headers.get("authorization", ""))
            assert (event.get("user") or {}).get("id") == user_id


class TestEvents:
    """Errors, logged errors and messages carry the request's whole context, once."""

    def test_handler_exception_is_reported_once_with_its_context(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/fail", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert response.status_code == 500
        assert event["exception"]["values"][-1]["value"] == "transcoder crashed"
        assert event["user"] == {"id": "alice"}
        assert_full_context(event, response.headers["x-request-id"], "/fail")

    def test_exception_is_one_event_with_the_sdk_integration_even_without_dedupe(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init(default_integrations=False, integrations=[StarletteIntegration()])
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/fail", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["tags"]["request_id"] == response.headers["x-request-id"]

    def test_server_error_response_carries_the_request_id(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/fail", headers={"X-Request-ID": "req-500"})
        assert response.status_code == 500
        assert response.headers["x-request-id"] == "req-500"

    def test_logged_error_carries_its_context(self, sentry: Init, ingest: SentryIngest) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/log", headers=OPS)
        [event] = events_before_marker(ingest)
        assert message_of(event) == "quota exceeded for pod-7"
        assert event["user"] == {"id": "acct-42"}
        assert_full_context(event, response.headers["x-request-id"], "/log")

    def test_captured_message_carries_its_context(self, sentry: Init, ingest: SentryIngest) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/message", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert event["message"] == "episode viewed"
        assert event["user"] == {"id": "alice"}
        assert_full_context(event, response.headers["x-request-id"], "/message")

    @pytest.mark.parametrize("status", [401, 403, 404, 429])
    def test_reported_client_errors_are_noise(
        self, sentry: Init, ingest: SentryIngest, status: int
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get(f"/http-error/{status}", headers=ALICE)
            unknown = client.get("/no-such-page", headers=ALICE)
        assert (response.status_code, unknown.status_code) == (status, 404)
        assert events_before_marker(ingest) == []

    def test_reported_server_error_exception_is_kept(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/http-error/503", headers=ALICE)
        [event] = events_before_marker(ingest)
        assert response.status_code == 503
        assert event["tags"]["request_id"] == response.headers["x-request-id"]


def added_with_add_middleware() -> Starlette:
    """The app with the middleware added by ``add_middleware``, inside ServerErrorMiddleware."""
    app = Starlette(
        routes=[Route("/message", message), Route("/fail", fail), Route("/log", log)],
        middleware=[Middleware(AuthenticationMiddleware, backend=TokenBackend())],
    )
    app.add_middleware(SentryContextMiddleware, user_extractor=starlette_user)
    return app


class TestRejectedRequestId:
    """A rejected incoming ID is replaced everywhere, the SDK's own request block included."""

    @pytest.mark.parametrize("hostile", list(HOSTILE_IDS))
    @pytest.mark.parametrize("build", [starlette_app, added_with_add_middleware])
    def test_rejected_request_id_reaches_no_event(
        self, sentry: Init, ingest: SentryIngest, build: Callable[[], Any], hostile: str
    ) -> None:
        sentry()
        asyncio.run(report_with_incoming_ids(build(), HOSTILE_IDS[hostile]))
        events = events_before_marker(ingest)
        assert len(events) == 3
        for event in events:
            assert HOSTILE_MARKER not in as_json(event)
            assert event["request"]["headers"]["x-request-id"] == event["tags"]["request_id"]


class TestWebsocket:
    def test_websocket_error_carries_user_and_request_id(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url:
            ws_url = url.replace("http", "ws", 1) + "/ws"
            with connect(ws_url, additional_headers=ALICE) as ws:
                request_id = handshake_request_id(ws)
                ws.send("fail")
                with pytest.raises(ConnectionClosedError):
                    ws.recv(timeout=10)
        [event] = events_before_marker(ingest)
        assert event["exception"]["values"][-1]["value"] == "websocket crashed"
        assert event["tags"]["request_id"] == request_id
        assert event["user"] == {"id": "alice"}
        assert event["contexts"]["business"] == BUSINESS

    def test_websocket_messages_each_carry_the_connection_context(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url:
            ws_url = url.replace("http", "ws", 1) + "/ws"
            with connect(ws_url, additional_headers=OPS) as ws:
                request_id = handshake_request_id(ws)
                for text in ("message", "log"):
                    ws.send(text)
                    assert ws.recv(timeout=10) == "done"
        events = events_before_marker(ingest)
        assert [message_of(e) for e in events] == [
            "websocket message",
            "websocket quota exceeded",
        ]
        for event in events:
            assert event["tags"]["request_id"] == request_id
            assert event["user"] == {"id": "acct-42"}
            assert event["breadcrumbs"]["values"][0]["message"] == "WEBSOCKET /ws"


class TestCors:
    def test_browsers_can_read_the_request_id_behind_cors(
        self, sentry: Init, ingest: SentryIngest
    ) -> None:
        sentry()
        with serve(starlette_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/", headers={"Origin": FRONTEND})
            preflight = client.options(
                "/",
                headers={
                    "Origin": FRONTEND,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "x-request-id",
                },
            )
        assert response.headers["access-control-allow-origin"] == FRONTEND
        assert response.headers["access-control-expose-headers"] == "X-Request-ID"
        assert response.headers["x-request-id"]
        assert preflight.status_code == 200
        assert "x-request-id" in preflight.headers["access-control-allow-headers"].lower()

    def test_cors_that_hides_the_request_id_is_warned_about(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = install(
            Starlette(
                routes=[Route("/", lambda request: PlainTextResponse("hi"))],
                middleware=[Middleware(CORSMiddleware, allow_origins=[FRONTEND])],
            )
        )
        with caplog.at_level(logging.WARNING, logger="asgi_sentry_ctx"):
            asyncio.run(request(app, "/"))
        assert "CORSMiddleware does not expose X-Request-ID" in caplog.text

    def test_cors_that_exposes_the_request_id_is_not_warned_about(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="asgi_sentry_ctx"):
            asyncio.run(request(starlette_app(), "/"))
        assert "CORSMiddleware" not in caplog.text


class TestInstall:
    def test_middleware_is_outside_server_error_middleware(self) -> None:
        app = starlette_app()
        asyncio.run(request(app, "/"))
        assert isinstance(app.middleware_stack, SentryContextMiddleware)
        assert isinstance(app.middleware_stack.app, ServerErrorMiddleware)

    def test_options_reach_the_middleware(self) -> None:
        app = starlette_app(header_name="X-Correlation-ID")
        response = asyncio.run(request(app, "/", headers=[(b"x-correlation-id", b"corr-1")]))
        assert response.header("x-correlation-id") == ["corr-1"]

    def test_installing_twice_is_an_error(self) -> None:
        app = starlette_app()
        with pytest.raises(RuntimeError, match="already installed"):
            install(app)

    def test_installing_after_the_first_request_is_an_error(self) -> None:
        app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hi"))])
        asyncio.run(request(app, "/"))
        with pytest.raises(RuntimeError, match="before the app serves"):
            install(app)

    def test_unknown_option_fails_at_install(self) -> None:
        with pytest.raises(TypeError):
            install(Starlette(), header="X-Request-ID")


class OldSimpleUser(SimpleUser):
    """``SimpleUser`` before Starlette 1.0: ``identity`` raised."""

    @property
    def identity(self) -> str:
        raise NotImplementedError


class Undecided(BaseUser):
    """A BaseUser that implements only ``identity``."""

    @property
    def identity(self) -> str:
        return "u-9"


class TestStarletteUser:
    """``starlette_user`` reads whatever AuthenticationMiddleware put in the scope."""

    def scope_with(self, user: object) -> dict[str, Any]:
        return {**http_scope(), "user": user}

    def test_no_authentication_middleware_is_no_user(self) -> None:
        assert starlette_user(http_scope()) is None

    def test_unauthenticated_user_is_no_user(self) -> None:
        assert starlette_user(self.scope_with(UnauthenticatedUser())) is None

    def test_simple_user_whose_identity_raises_is_identified_by_its_name(self) -> None:
        assert starlette_user(self.scope_with(OldSimpleUser("alice"))) == {"id": "alice"}

    def test_user_that_does_not_say_whether_it_is_authenticated_is_read_by_identity(
        self,
    ) -> None:
        assert starlette_user(self.scope_with(Undecided())) == {"id": "u-9"}

    def test_mapping_user_is_read_by_its_id(self) -> None:
        assert starlette_user(self.scope_with({"id": 7, "email": "x@example.com"})) == {"id": "7"}


@pytest.fixture(params=[False, True], ids=["sdk-integration-off", "sdk-integration-on"])
def owner(request: pytest.FixtureRequest, production: ProductionInit) -> Init:
    """``init_sentry`` with sentry-sdk's Starlette integration off (the default: the
    middleware owns the request) or on (``framework_integrations=True``), traces off."""

    def init(**options: Any) -> None:
        settings = {"traces_sample_rate": 0.0, "transport_queue_size": 10_000, **options}
        init_ours(
            production, [StarletteIntegration], framework_integrations=request.param, **settings
        )

    return init


@pytest.fixture
def ours(production: ProductionInit) -> Init:
    """``init_sentry`` as the docs set it up: sentry-sdk's Starlette integration off."""

    def init(**options: Any) -> None:
        settings = {"traces_sample_rate": 0.0, "transport_queue_size": 10_000, **options}
        init_ours(production, [StarletteIntegration], framework_integrations=False, **settings)

    return init


async def publish(request: Request) -> Response:
    raise RuntimeError("transcoder crashed")


async def unavailable(request: Request) -> Response:
    raise HTTPException(status_code=request.path_params["status"])


async def crashing_websocket(ws: Any) -> None:
    await ws.accept()
    raise RuntimeError("websocket crashed")


def routed_app(**install_options: Any) -> Starlette:
    """Routes with templates, under mounts, and ``HTTPException``s no handler of the app reports."""
    return install(
        Starlette(
            routes=[
                Route("/podcasts/{podcast_id}/publish", publish),
                Route("/status/{status:int}", unavailable),
                WebSocketRoute("/live/{room}", crashing_websocket),
                Mount(
                    "/orgs/{org}",
                    routes=[Mount("/v1", routes=[Route("/episodes/{episode_id}", publish)])],
                ),
                Host("testserver", Route("/", publish)),
            ]
        ),
        **install_options,
    )


def fail_at(app: Starlette, path: str, headers: Any = ()) -> None:
    with pytest.raises(RuntimeError, match="crashed"):
        asyncio.run(request(app, path, headers=headers))


class TestTransactionNames:
    """Events and transactions are named as sentry-sdk's Starlette integration names them
    (with that integration on, ``framework_integrations=True``, its names are the ones sent)."""

    def test_error_event_is_named_by_its_route_template(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours()
        fail_at(routed_app(), "/podcasts/7/publish")
        [event] = events_before_marker(ingest)
        assert event["transaction"] == "/podcasts/{podcast_id}/publish"
        assert event["transaction_info"] == {"source": "route"}

    def test_route_under_mounts_is_named_with_the_mounts_templates(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours()
        fail_at(routed_app(), "/orgs/acme/v1/episodes/9")
        [event] = events_before_marker(ingest)
        assert event["transaction"] == "/orgs/{org}/v1/episodes/{episode_id}"

    def test_websocket_error_is_named_by_its_route_template(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours()
        with serve(routed_app()) as url:
            live = url.replace("http", "ws", 1) + "/live/lobby"
            with connect(live) as ws, pytest.raises(ConnectionClosedError):
                ws.recv(timeout=10)
        [event] = events_before_marker(ingest)
        assert (event["transaction"], event["transaction_info"]) == (
            "/live/{room}",
            {"source": "route"},
        )

    def test_endpoint_style_names_the_endpoint_function(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours()
        fail_at(routed_app(transaction_style="endpoint"), "/orgs/acme/v1/episodes/9")
        [event] = events_before_marker(ingest)
        assert event["transaction"] == f"{__name__}.publish"
        assert event["transaction_info"] == {"source": "component"}

    def test_host_route_is_named_by_its_url_as_it_has_no_template(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours()
        fail_at(routed_app(), "/")
        [event] = events_before_marker(ingest)
        assert (event["transaction"], event["transaction_info"]) == (
            "http://testserver/",
            {"source": "url"},
        )

    def test_sampled_request_that_matched_no_route_is_named_by_its_url(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours(traces_sample_rate=1.0)
        response = asyncio.run(request(routed_app(), "/no-such-page", query_string=b"a=1"))
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert response.status == 404
        assert transaction["transaction"] == "http://testserver/no-such-page"
        assert transaction["transaction_info"] == {"source": "url"}

    def test_sampled_request_transaction_is_named_by_its_route(
        self, ours: Init, ingest: SentryIngest
    ) -> None:
        ours(traces_sample_rate=1.0)
        asyncio.run(request(routed_app(), "/status/200"))
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["transaction"] == "/status/{status:int}"
        assert transaction["contexts"]["trace"]["op"] == "http.server"

    def test_unknown_transaction_style_is_refused(self) -> None:
        with pytest.raises(ValueError, match="transaction_style must be one of"):
            install(Starlette(), transaction_style="route")


class TestServerErrorHttpException:
    """A raised ``HTTPException`` answered with a 5xx is reported once, as the SDK reports it."""

    def test_raised_503_is_one_event_with_the_request_id_and_route_name(
        self, owner: Init, ingest: SentryIngest
    ) -> None:
        owner()
        with serve(routed_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get("/status/503")
        [event] = events_before_marker(ingest)
        assert response.status_code == 503
        assert event["exception"]["values"][-1]["type"] == "HTTPException"
        assert event["tags"]["request_id"] == response.headers["x-request-id"]
        assert event["transaction"] == "/status/{status:int}"

    @pytest.mark.parametrize("status", [401, 404])
    def test_raised_client_error_sends_nothing(
        self, owner: Init, ingest: SentryIngest, status: int
    ) -> None:
        owner()
        with serve(routed_app()) as url, httpx.Client(base_url=url) as client:
            response = client.get(f"/status/{status}")
        assert response.status_code == status
        assert events_before_marker(ingest) == []
