"""An exception is one event, even when sentry-sdk's ASGI middleware reports it again outside us."""

from __future__ import annotations

from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit


class Boom(Exception):
    pass


async def failing(scope: Any, receive: Any, send: Any) -> None:
    raise Boom("upload failed")


async def test_sdk_middleware_outside_ours_does_not_report_again_without_dedupe(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    # DedupeIntegration, which would otherwise hide the second report, is off.
    sentry_init(default_integrations=False)
    app = SentryAsgiMiddleware(SentryContextMiddleware(failing))
    with pytest.raises(Boom):
        await request(app, "/upload")
    sentry_sdk.capture_message("marker")
    events = ingest.wait_for_events(2)
    assert [e.get("message") or e["exception"]["values"][-1]["value"] for e in events] == [
        "upload failed",
        "marker",
    ]


async def test_exception_captured_twice_by_the_app_is_one_event(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(default_integrations=False)

    async def reports_twice(scope: Any, receive: Any, send: Any) -> None:
        try:
            raise Boom("payment failed")
        except Boom as exc:
            sentry_sdk.capture_exception(exc)
            sentry_sdk.capture_exception(exc)
        sentry_sdk.capture_message("marker")

    await request(SentryContextMiddleware(reports_twice), "/pay")
    events = ingest.wait_for_events(2)
    assert [e.get("message") or e["exception"]["values"][-1]["value"] for e in events] == [
        "payment failed",
        "marker",
    ]
