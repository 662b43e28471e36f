"""The core next to sentry-sdk's own integrations: whose context wins, and one event per error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import SentryContextMiddleware, capture_message, set_user
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit

if TYPE_CHECKING:
    from sentry_sdk._types import EventProcessor


# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)


async def ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def partial_user(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    event["user"] = {"id": "sdk-partial"}
    return event


async def test_our_user_wins_over_one_an_sdk_integration_adds_later_in_the_request(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(**PII_ALLOWED)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # What the SDK's Quart integration does once the request is routed.
        sentry_sdk.get_isolation_scope().add_event_processor(cast("EventProcessor", partial_user))
        set_user("user-1")
        capture_message("hello")
        await ok(send)

    await request(SentryAsgiMiddleware(SentryContextMiddleware(app)))
    [event] = ingest.wait_for_events(1)
    assert event["user"] == {"id": "user-1"}


async def test_a_second_capture_of_a_reported_exception_is_dropped_without_dedupe(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(default_integrations=False)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            raise ValueError("once")
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
            sentry_sdk.capture_exception(exc)  # e.g. a framework logging what it handled
        await ok(send)

    await request(SentryContextMiddleware(app))
    sentry_sdk.flush(5)
    capture_message("marker")
    events = ingest.wait_for_events(2)
    assert [e.get("message") or e["exception"]["values"][0]["value"] for e in events] == [
        "once",
        "marker",
    ]
