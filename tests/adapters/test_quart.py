"""The Quart adapter on a real Quart + quart-auth app, served by uvicorn and hypercorn.

Every test asserts on the envelopes the SDK's real transport posted to the
loopback ingest, with sentry-sdk's own QuartIntegration off and on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from quart import Quart, abort, request, websocket
from quart_auth import AuthUser, QuartAuth, current_user, login_required, login_user
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.quart import QuartIntegration
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asgi_sentry_ctx import (
    add_breadcrumb,
    capture_message,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.adapters.quart import init_app
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import reset_sdk
from tests.parity import sdk_integrations
from tests.servers import serve

SERVERS = ["uvicorn", "hypercorn"]
Init = Callable[..., None]
# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)

server_param = pytest.mark.parametrize("server", SERVERS)
sdk_param = pytest.mark.parametrize("sdk", [False, True], ids=["own-only", "with-sdk-quart"])


@pytest.fixture
def sentry(ingest: SentryIngest) -> Iterator[Init]:
    """``init_sentry`` (noise filter, logging integration, scrubbing) sending to ``ingest``.

    ``sdk=True`` keeps sentry-sdk's auto-enabled QuartIntegration on
    (``framework_integrations=True``); ``init_sentry`` turns it off otherwise.
    """

    def init(*, sdk: bool = False, **options: Any) -> None:
        options.setdefault("traces_sample_rate", 0.0)
        # sentry-sdk decides once per process whether an integration is set up:
        # put its registry as a fresh process has it, whatever earlier tests did.
        with sdk_integrations([QuartIntegration], enabled=sdk):
            assert init_sentry(
                ingest.dsn,
                environment="test",
                enable_in_dev=True,
                auto_enabling_integrations=sdk,
                framework_integrations=sdk,
                transport_queue_size=10_000,
                **options,
            )
        has_sdk_integration = sentry_sdk.get_client().get_integration(QuartIntegration) is not None
        assert has_sdk_integration is sdk

    yield init
    reset_sdk()


def make_app(**adapter_options: Any) -> Quart:
    """A small podcast API: quart-auth cookie login, failing and logging views, a websocket."""
    app = Quart(__name__)
    app.secret_key = "test-only-secret"
    app.config["QUART_AUTH_COOKIE_SECURE"] = False  # plain http on 127.0.0.1
    QuartAuth(app)
    init_app(app, **adapter_options)

    @app.post("/login/<user_id>")
    async def login(user_id: str) -> str:
        login_user(AuthUser(user_id))
        return "logged in"

    @app.post("/podcasts/<podcast_id>/upload")
    async def upload(podcast_id: str) -> str:
        set_business_context(podcast_id=podcast_id, action="upload")
        add_breadcrumb("validated", category="upload")
        raise RuntimeError("storage unavailable")

    @app.get("/podcasts/<podcast_id>/transcode")
    async def transcode(podcast_id: str) -> str:
        set_business_context(podcast_id=podcast_id, action="transcode")
        add_breadcrumb("queued", category="transcode")
        logging.getLogger("podcasts").error("transcoder gave up")
        return "accepted"

    @app.get("/podcasts/<podcast_id>/quota")
    async def quota(podcast_id: str) -> str:
        set_business_context(podcast_id=podcast_id, action="quota")
        add_breadcrumb("counted", category="quota")
        capture_message("quota almost used", level="warning")
        return "ok"

    @app.get("/private")
    @login_required
    async def private() -> str:
        return "secret"

    @app.get("/forbidden")
    async def forbidden() -> str:
        abort(403)

    @app.get("/limited")
    async def limited() -> str:
        abort(429)

    @app.post("/form")
    async def form() -> str:
        return str((await request.form)["title"])  # missing: werkzeug's BadRequestKeyError

    @app.websocket("/podcasts/<podcast_id>/live")
    async def live(podcast_id: str) -> None:
        await websocket.accept()
        set_business_context(podcast_id=podcast_id, action="live")
        while True:
            data = await websocket.receive()
            command = data if isinstance(data, str) else data.decode()
            add_breadcrumb(f"command {command}", category="live")
            if command == "fail":
                raise RuntimeError("live stream broke")
            capture_message(f"live {command}")
            await websocket.send("ok")

    return app


def login(client: httpx.Client, user_id: str) -> str:
    """Log in through the app's own view; return the Cookie header a websocket client sends."""
    response = client.post(f"/login/{user_id}")
    assert response.status_code == 200
    assert "QUART_AUTH" in client.cookies
    return f"QUART_AUTH={client.cookies['QUART_AUTH']}"


def ws_url(url: str, path: str) -> str:
    return url.replace("http://", "ws://", 1) + path


def events_before_marker(ingest: SentryIngest) -> list[dict[str, Any]]:
    """Every event sent before a marker captured now: the transport sends in order."""
    capture_message("marker")
    sentry_sdk.flush(10)  # returns once the ingest has acknowledged everything queued
    events = ingest.wait_for_events(1)
    assert events[-1].get("message") == "marker", events
    return events[:-1]


def only_event_then_marker(ingest: SentryIngest) -> dict[str, Any]:
    """The one event the requests produced; the marker sent after it proves there is no other."""
    events = events_before_marker(ingest)
    assert len(events) == 1, events
    return events[0]


def crumbs(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.get("category", ""), c.get("message", "")) for c in event["breadcrumbs"]["values"]]


@server_param
@sdk_param
def test_anonymous_request_carries_no_user(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk, **PII_ALLOWED)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        assert client.get("/podcasts/p-1/quota").status_code == 200
    event = only_event_then_marker(ingest)
    assert event["message"] == "quota almost used"
    # No user field with a value. (sentry-sdk 2.20's QuartIntegration writes
    # quart-auth's anonymous user as {"id": None}, which Sentry shows as no user.)
    assert {k: v for k, v in (event.get("user") or {}).items() if v is not None} == {}


@server_param
@sdk_param
def test_handler_exception_is_one_event_with_full_context(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        login(client, "user-42")
        response = client.post("/podcasts/p-7/upload", headers={"X-Request-ID": "req-upload-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-upload-1"
    event = only_event_then_marker(ingest)
    [exc] = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == ("RuntimeError", "storage unavailable")
    assert exc["mechanism"]["handled"] is False
    assert event["tags"]["request_id"] == "req-upload-1"
    assert event["user"] == {"id": "user-42"}
    assert event["contexts"]["business"] == {"podcast_id": "p-7", "action": "upload"}
    assert (event["tags"]["podcast_id"], event["tags"]["action"]) == ("p-7", "upload")
    assert crumbs(event)[0] == ("request", "POST /podcasts/p-7/upload")
    assert ("upload", "validated") in crumbs(event)
    assert event["request"]["method"] == "POST"


@server_param
@sdk_param
def test_logged_error_carries_full_context(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        login(client, "user-5")
        response = client.get("/podcasts/p-3/transcode", headers={"X-Request-ID": "req-log-1"})
    assert response.status_code == 200
    event = only_event_then_marker(ingest)
    assert event["logentry"]["message"] == "transcoder gave up"
    assert event["logger"] == "podcasts"
    assert event["tags"]["request_id"] == "req-log-1"
    assert event["user"] == {"id": "user-5"}
    assert event["contexts"]["business"] == {"podcast_id": "p-3", "action": "transcode"}
    assert crumbs(event)[:2] == [
        ("request", "GET /podcasts/p-3/transcode"),
        ("transcode", "queued"),
    ]


@server_param
@sdk_param
def test_captured_message_carries_full_context(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        login(client, "user-8")
        client.get("/podcasts/p-9/quota", headers={"X-Request-ID": "req-msg-1"})
    event = only_event_then_marker(ingest)
    assert event["message"] == "quota almost used"
    assert event["level"] == "warning"
    assert event["tags"]["request_id"] == "req-msg-1"
    assert event["user"] == {"id": "user-8"}
    assert event["contexts"]["business"] == {"podcast_id": "p-9", "action": "quota"}
    assert crumbs(event) == [("request", "GET /podcasts/p-9/quota"), ("quota", "counted")]


@server_param
@sdk_param
def test_websocket_message_carries_user_request_id_and_context(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        cookie = login(client, "user-11")
        headers = {"Cookie": cookie, "X-Request-ID": "ws-req-1"}
        with connect(ws_url(url, "/podcasts/p-2/live"), additional_headers=headers) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-req-1"
            ws.send("start")
            assert ws.recv(timeout=10) == "ok"
    event = only_event_then_marker(ingest)
    assert event["message"] == "live start"
    assert event["tags"]["request_id"] == "ws-req-1"
    assert event["user"] == {"id": "user-11"}
    assert event["contexts"]["business"] == {"podcast_id": "p-2", "action": "live"}
    assert crumbs(event)[0] == ("request", "WEBSOCKET /podcasts/p-2/live")
    assert ("live", "command start") in crumbs(event)


@server_param
@sdk_param
def test_websocket_exception_is_one_event_with_user_and_request_id(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    with serve(make_app(), server=server) as url, httpx.Client(base_url=url) as client:
        cookie = login(client, "user-12")
        headers = {"Cookie": cookie, "X-Request-ID": "ws-req-2"}
        with connect(ws_url(url, "/podcasts/p-4/live"), additional_headers=headers) as ws:
            ws.send("fail")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
    event = only_event_then_marker(ingest)
    [exc] = event["exception"]["values"]
    assert exc["value"] == "live stream broke"
    assert event["tags"]["request_id"] == "ws-req-2"
    assert event["user"] == {"id": "user-12"}
    assert event["contexts"]["business"] == {"podcast_id": "p-4", "action": "live"}
    assert ("live", "command fail") in crumbs(event)


@server_param
@sdk_param
def test_werkzeug_not_found_auth_and_validation_errors_are_noise(
    server: str, sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    sentry(sdk=sdk)
    app = make_app()
    # Trapped, these reach Quart's got_request_exception and so our reporter:
    # only the noise filter stands between them and Sentry.
    app.config["TRAP_HTTP_EXCEPTIONS"] = True
    with serve(app, server=server) as url, httpx.Client(base_url=url) as client:
        statuses = [
            client.get("/no/such/page").status_code,
            client.get("/private").status_code,
            client.get("/forbidden").status_code,
            client.get("/limited").status_code,
            client.post("/form", data={"other": "x"}).status_code,
        ]
    assert statuses == [500] * 5  # trapped: each became a 500 after reaching the reporter
    assert events_before_marker(ingest) == []


@server_param
def test_each_user_gets_only_their_own_events_under_concurrency(
    server: str, sentry: Init, ingest: SentryIngest
) -> None:
    sentry()
    rounds = 10

    async def as_user(url: str, user: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.post(f"/login/{user}")
            for n in range(rounds):
                await client.get(f"/podcasts/{user}-{n}/quota")

    with serve(make_app(), server=server) as url:

        async def main() -> None:
            await asyncio.gather(*(as_user(url, f"u{i}") for i in range(4)))

        asyncio.run(main())
    events = ingest.wait_for_events(4 * rounds)
    assert len(events) == 4 * rounds
    for event in events:
        podcast = event["contexts"]["business"]["podcast_id"]
        assert event["user"] == {"id": podcast.split("-")[0]}
        assert crumbs(event)[0] == ("request", f"GET /podcasts/{podcast}/quota")


@server_param
def test_user_getter_wins_over_the_sdk_integration_user(
    server: str, sentry: Init, ingest: SentryIngest
) -> None:
    # With PII allowed, sentry-sdk's QuartIntegration sets user.id from
    # quart-auth's auth id; ours comes from the getter and must win.
    sentry(sdk=True, **PII_ALLOWED)

    def user_getter() -> dict[str, Any] | None:
        auth_id = current_user.auth_id
        return None if auth_id is None else {"id": f"db-{auth_id}", "username": auth_id}

    with (
        serve(make_app(user_getter=user_getter), server=server) as url,
        httpx.Client(base_url=url) as client,
    ):
        login(client, "alice")
        client.post("/podcasts/p-1/upload")
    event = only_event_then_marker(ingest)
    assert event["user"] == {"id": "db-alice", "username": "alice"}


def test_async_user_getter_is_awaited_once_per_request(sentry: Init, ingest: SentryIngest) -> None:
    sentry()
    calls: list[str] = []

    async def user_getter() -> str | None:
        calls.append(request.path)
        await asyncio.sleep(0)  # stands for a database look-up
        if not await current_user.is_authenticated:
            return None
        return current_user.auth_id

    app = make_app(user_getter=user_getter)

    @app.get("/twice")
    async def twice() -> str:
        capture_message("first")
        capture_message("second")
        return "ok"

    with serve(app) as url, httpx.Client(base_url=url) as client:
        login(client, "bob")
        calls.clear()
        client.get("/twice")
    events = ingest.wait_for_events(2)
    assert [e["user"] for e in events] == [{"id": "bob"}, {"id": "bob"}]
    assert calls == ["/twice"]


def test_background_task_exception_is_reported_once_with_its_request_context(
    sentry: Init, ingest: SentryIngest
) -> None:
    sentry()
    app = make_app()

    async def publish() -> None:
        raise RuntimeError("feed publish failed")

    @app.post("/podcasts/<podcast_id>/publish")
    async def publish_view(podcast_id: str) -> str:
        set_business_context(podcast_id=podcast_id, action="publish")
        app.add_background_task(publish)
        return "accepted"

    # Leaving ``serve`` shuts the app down, and Quart's shutdown waits for its
    # background tasks: everything they captured is queued before the marker.
    with serve(app) as url, httpx.Client(base_url=url) as client:
        login(client, "carol")
        response = client.post("/podcasts/p-5/publish", headers={"X-Request-ID": "req-bg-1"})
    assert response.status_code == 200
    event = only_event_then_marker(ingest)
    assert event["exception"]["values"][0]["value"] == "feed publish failed"
    assert event["tags"]["request_id"] == "req-bg-1"
    assert event["user"] == {"id": "carol"}
    assert event["contexts"]["business"] == {"podcast_id": "p-5", "action": "publish"}


def test_request_id_header_is_readable_by_browsers_behind_quart_cors(
    sentry: Init,
) -> None:
    from quart_cors import cors

    sentry()
    app = cors(make_app(), allow_origin="https://app.example", expose_headers=["X-Request-ID"])
    with serve(app) as url, httpx.Client(base_url=url) as client:
        response = client.get("/podcasts/p-1/transcode", headers={"Origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    exposed = response.headers["access-control-expose-headers"].lower().split(", ")
    assert "x-request-id" in exposed
    assert len(response.headers["x-request-id"]) == 32


def test_app_without_quart_auth_sends_events_without_user_and_logs_nothing(
    sentry: Init, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
) -> None:
    sentry()
    app = Quart(__name__)
    init_app(app)

    @app.get("/")
    async def index() -> str:
        capture_message("no auth here")
        return "ok"

    with serve(app) as url, httpx.Client(base_url=url) as client:
        client.get("/")
    [event] = ingest.wait_for_events(1)
    assert "user" not in event
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "extractor", [lambda scope: "u-1", None], ids=["extractor", "explicit-none"]
)
def test_user_getter_and_user_extractor_are_refused_together(extractor: Any) -> None:
    app = Quart(__name__)
    with pytest.raises(TypeError, match="pass user_getter or user_extractor, not both"):
        init_app(app, user_getter=lambda: "u-1", user_extractor=extractor)
    init_app(app)  # nothing was installed by the refused call


def test_init_app_twice_is_refused() -> None:
    app = Quart(__name__)
    init_app(app)
    with pytest.raises(RuntimeError, match="already"):
        init_app(app)


@sdk_param
def test_exception_is_one_event_even_without_the_sdk_dedupe_integration(
    sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    # Quart also logs every exception it handles, and init_sentry's logging
    # integration turns that log into an event: the SDK's DedupeIntegration
    # usually drops it, but it is a default integration an app can turn off.
    # Without default integrations the SDK's QuartIntegration is on only when named.
    sentry(sdk=sdk, default_integrations=False, integrations=[QuartIntegration()] if sdk else [])
    with serve(make_app()) as url, httpx.Client(base_url=url) as client:
        assert client.post("/podcasts/p-1/upload").status_code == 500
    event = only_event_then_marker(ingest)
    assert event["exception"]["values"][0]["value"] == "storage unavailable"


def test_user_logged_in_during_the_request_is_on_its_later_events(
    sentry: Init, ingest: SentryIngest
) -> None:
    sentry()
    app = make_app()

    @app.post("/signup/<user_id>")
    async def signup(user_id: str) -> str:
        capture_message("before login")
        login_user(AuthUser(user_id))
        capture_message("after login")
        return "welcome"

    with serve(app) as url, httpx.Client(base_url=url) as client:
        assert client.post("/signup/new-user").status_code == 200
    before, after = events_before_marker(ingest)
    assert (before["message"], "user" in before) == ("before login", False)
    assert (after["message"], after["user"]) == ("after login", {"id": "new-user"})


def test_raising_async_user_getter_is_logged_and_the_request_goes_on(
    sentry: Init, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
) -> None:
    sentry()

    async def user_getter() -> str:
        raise ConnectionError("user database down")

    with (
        serve(make_app(user_getter=user_getter)) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert client.get("/podcasts/p-1/quota").status_code == 200
    event = only_event_then_marker(ingest)
    assert event["message"] == "quota almost used"
    assert "user" not in event
    assert any("user_getter raised" in r.getMessage() for r in caplog.records)


@sdk_param
def test_error_is_named_by_its_endpoint_as_sentry_sdk_names_it(
    sdk: bool, sentry: Init, ingest: SentryIngest
) -> None:
    """The default ``transaction_style="endpoint"``: the view's endpoint, source component."""
    sentry(sdk=sdk)
    app = make_app()
    asyncio.run(app.test_client().post("/podcasts/p-7/upload"))
    event = only_event_then_marker(ingest)
    assert (event["transaction"], event["transaction_info"]) == ("upload", {"source": "component"})


def test_url_style_names_errors_and_transactions_by_the_url_rule(
    sentry: Init, ingest: SentryIngest
) -> None:
    """``transaction_style="url"``: the rule's template, source route, on both."""
    sentry(traces_sample_rate=1.0)
    app = make_app(transaction_style="url")
    asyncio.run(app.test_client().post("/podcasts/p-7/upload"))
    event = only_event_then_marker(ingest)
    [transaction] = ingest.wait_for_items("transaction", 1)
    for item in (event, transaction):
        assert item["transaction"] == "/podcasts/<podcast_id>/upload"
        assert item["transaction_info"] == {"source": "route"}


def test_websocket_error_is_named_by_its_endpoint(sentry: Init, ingest: SentryIngest) -> None:
    """A websocket's events are named by its view as a request's are."""
    sentry()
    with serve(make_app()) as url, connect(ws_url(url, "/podcasts/p-3/live")) as ws:
        ws.send("fail")
        with pytest.raises(ConnectionClosed):
            ws.recv()
    [event] = ingest.wait_for_events(1)
    assert (event["transaction"], event["transaction_info"]) == ("live", {"source": "component"})


def test_unknown_transaction_style_is_refused() -> None:
    """A typo fails at set-up, naming the styles there are."""
    with pytest.raises(ValueError, match=r"transaction_style must be one of \('endpoint', 'url'\)"):
        init_app(Quart(__name__), transaction_style="route")
