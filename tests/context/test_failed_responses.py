"""A framework's HTTP exception answered with a failed status (5xx by default) is
reported once, with the request's context; other statuses are not."""

from __future__ import annotations

from typing import Any

import pytest

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.adapters.support import declare_http_exceptions
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import ProductionInit
from tests.events import events_before_marker


class DeclaredHTTPError(Exception):
    """A framework's HTTP exception, as an adapter would declare it."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class OtherError(Exception):
    pass


declare_http_exceptions(DeclaredHTTPError)


def handling(exc_type: type[Exception], status: int) -> Any:
    """An app whose exception handler answers ``status`` inside its ``except``
    block, as Starlette's and Litestar's exception middleware do."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            raise exc_type(status) if exc_type is DeclaredHTTPError else exc_type("handled")
        except Exception:
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    return app


async def test_a_declared_exception_answered_503_is_reported_once(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    """One event for the 503, with the request's ID and name; the response is unchanged."""
    production(traces_sample_rate=0.0)
    response = await request(SentryContextMiddleware(handling(DeclaredHTTPError, 503)), "/p")

    assert response.status == 503
    [event] = events_before_marker(ingest)
    assert event["exception"]["values"][-1]["type"] == "DeclaredHTTPError"
    assert event["tags"]["request_id"] == response.header("x-request-id")[0]
    assert event["transaction"] == "/p"


@pytest.mark.parametrize("status", [400, 404, 499])
async def test_a_declared_exception_answered_below_500_is_not_reported(
    production: ProductionInit, ingest: SentryIngest, status: int
) -> None:
    """A client error is not the service's failure."""
    production(traces_sample_rate=0.0)
    await request(SentryContextMiddleware(handling(DeclaredHTTPError, status)))

    assert events_before_marker(ingest) == []


async def test_an_undeclared_exception_answered_500_is_not_reported(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    """An exception the app handled itself into a 500 is the app's decision."""
    production(traces_sample_rate=0.0)
    await request(SentryContextMiddleware(handling(OtherError, 500)))

    assert events_before_marker(ingest) == []


async def test_the_failed_status_codes_are_configurable(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    """``failed_request_status_codes={502}``: a 502 is reported, a 503 is not."""
    production(traces_sample_rate=0.0)
    for status in (502, 503):
        app = SentryContextMiddleware(
            handling(DeclaredHTTPError, status), failed_request_status_codes={502}
        )
        await request(app)

    [event] = events_before_marker(ingest)
    assert event["exception"]["values"][-1]["value"] == "HTTP 502"
