"""Quart exceptions raised outside any request: one event each, not a second when Quart logs them.

A background task started when the app starts serving runs in no request: no
per-request event processor sees its events. Quart reports its exception
through ``got_background_exception``, then logs it itself
(``logger.error("Exception", exc_info=...)``), and ``init_sentry``'s logging
integration turns that log into an event: only the mark ``report_exception``
leaves on the exception drops it. The SDK's ``DedupeIntegration`` would hide
the duplicate, but it is a default integration an app can turn off. These
tests turn the default integrations off (not with ``disabled_integrations``:
sentry-sdk 2.75 ignores it for an integration an earlier ``init`` in the
process has set up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Quart
from sentry_sdk.integrations.quart import QuartIntegration

from asgi_sentry_ctx.adapters.quart import init_app
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit
from tests.events import events_before_marker
from tests.servers import serve


def app_starting(job: Callable[[], Awaitable[None]]) -> Quart:
    """A Quart app that starts ``job`` as a background task when it starts serving."""
    app = Quart(__name__)
    init_app(app)

    @app.before_serving
    async def start_job() -> None:
        app.add_background_task(job)

    return app


async def warm_cache() -> None:
    raise RuntimeError("cache warm-up failed")


def run_app_once() -> None:
    # Leaving ``serve`` shuts the app down, and Quart's shutdown waits for its
    # background tasks: their report and Quart's log are queued before the marker.
    with serve(app_starting(warm_cache)):
        pass


def test_a_background_exception_outside_any_request_is_one_event_though_quart_logs_it(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    production(default_integrations=False)
    run_app_once()
    [event] = events_before_marker(ingest)
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "cache warm-up failed")
    assert exception["mechanism"] == {"type": "quart", "handled": False}
    assert "request_id" not in event.get("tags", {})


def test_a_background_exception_outside_any_request_is_one_event_with_the_sdk_quart_integration(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    production(default_integrations=False, integrations=[QuartIntegration()])
    run_app_once()
    events = events_before_marker(ingest)
    assert [e["exception"]["values"][0]["value"] for e in events] == ["cache warm-up failed"]
