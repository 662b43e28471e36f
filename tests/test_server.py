"""End to end: the middleware under a real uvicorn server, events through the real transport."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from websockets.sync.client import connect

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    capture_message,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.pytest_plugin import SentryEvents
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import lifespan
from tests.conftest import SentryInit
from tests.servers import serve


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": get_request_id()})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/fail":
        set_user("user-9")
        set_business_context(podcast_id="p-9", action="upload")
        raise RuntimeError("storage unavailable")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_a_real_server_serves_request_ids_and_events_reach_the_ingest(
    server: str, sentry_events: SentryEvents
) -> None:
    wrapped = SentryContextMiddleware(app)
    with serve(wrapped, server=server) as url, httpx.Client(base_url=url) as client:
        ok = client.get("/", headers={"X-Request-ID": "incoming-1"})
        fresh = client.get("/")
        failed = client.get("/fail", headers={"X-Request-ID": "incoming-2"})
    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == "incoming-1"
    assert len(fresh.headers["x-request-id"]) == 32
    assert failed.status_code == 500
    [event] = sentry_events.settle()
    assert event["tags"]["request_id"] == "incoming-2"
    assert event["user"] == {"id": "user-9"}
    assert event["contexts"]["business"] == {"podcast_id": "p-9", "action": "upload"}
    assert event["request"]["url"] == f"{url}/fail"
    assert event["exception"]["values"][0]["value"] == "storage unavailable"


def test_a_real_server_echoes_the_id_on_the_websocket_handshake() -> None:
    with (
        serve(SentryContextMiddleware(app)) as url,
        connect(
            url.replace("http", "ws") + "/ws", additional_headers={"X-Request-ID": "ws-real"}
        ) as ws,
    ):
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "ws-real"
        assert ws.recv() == "ws-real"


def test_the_servers_log_of_a_reported_error_is_not_a_second_event(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    """uvicorn logs "Exception in ASGI application"; without Dedupe that was a second event."""
    sentry_init(
        default_integrations=False,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
    )
    with serve(SentryContextMiddleware(app)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/fail").status_code == 500
    sentry_sdk.flush(5)
    capture_message("marker")
    events = ingest.wait_for_events(2)
    assert [e.get("message") or e["exception"]["values"][-1]["value"] for e in events] == [
        "storage unavailable",
        "marker",
    ]
