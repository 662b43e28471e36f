"""Any ASGI app: Django's, wrapped in the middleware and served by uvicorn.

No adapter: ``SentryContextMiddleware(get_asgi_application())`` as docs/isolation.md
shows it. An async view runs on the event loop; a sync view runs in the thread
asgiref's ``sync_to_async`` gives it, in a copy of the request's context.
Sentry is set up with ``init_sentry``'s defaults, so sentry-sdk's own
DjangoIntegration is on, as a Django user gets it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
import httpx
import pytest
from django.conf import settings

from asgi_sentry_ctx import (
    RequestContextFilter,
    SentryContextMiddleware,
    get_request_id,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.pytest_plugin import SentryEvents
from tests.asgi import lifespan
from tests.servers import serve

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,  # Django leaves the test run's logging alone
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import path

log = logging.getLogger("tests.django")


def _who(request: HttpRequest) -> None:
    set_user(request.headers.get("X-User", "anonymous"))
    set_business_context(podcast_id=request.headers.get("X-Podcast", "none"), action="upload")


async def async_id(request: HttpRequest) -> JsonResponse:
    log.warning("in the async view")
    return JsonResponse({"request_id": get_request_id()})


def sync_id(request: HttpRequest) -> JsonResponse:
    log.warning("in the sync view")
    return JsonResponse({"request_id": get_request_id()})


async def async_fails(request: HttpRequest) -> JsonResponse:
    _who(request)
    raise RuntimeError("async upload failed")


def sync_fails(request: HttpRequest) -> JsonResponse:
    _who(request)
    raise RuntimeError("sync upload failed")


urlpatterns = [
    path("async-id", async_id),
    path("sync-id", sync_id),
    path("async-fails", async_fails),
    path("sync-fails", sync_fails),
]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestContextFilter())
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), record.request_id))  # type: ignore[attr-defined]


@pytest.fixture
def served(sentry_events: SentryEvents) -> Iterator[httpx.Client]:
    """The Django app under uvicorn, Sentry initialised as the plugin does for
    an app's own tests (``sentry_events``, docs/testing.md)."""
    django_app = SentryContextMiddleware(get_asgi_application())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        # Django refuses lifespan; uvicorn's default (lifespan="auto") shrugs
        # that off, the test server insists on a clean start-up.
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            await django_app(scope, receive, send)

    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture
def records() -> Iterator[Collect]:
    collect = Collect()
    log.addHandler(collect)
    try:
        yield collect
    finally:
        log.removeHandler(collect)


@pytest.mark.parametrize("view", ["async-id", "sync-id"])
def test_both_kinds_of_view_see_the_request_id(
    served: httpx.Client, records: Collect, view: str
) -> None:
    response = served.get(f"/{view}", headers={"X-Request-ID": f"dj-{view}"})
    assert response.json() == {"request_id": f"dj-{view}"}
    assert response.headers["x-request-id"] == f"dj-{view}"
    kind = view.split("-")[0]
    assert records.seen == [(f"in the {kind} view", f"dj-{view}")]


@pytest.mark.parametrize("view", ["async-fails", "sync-fails"])
def test_an_unhandled_error_is_one_event_with_the_requests_context(
    served: httpx.Client, sentry_events: SentryEvents, view: str
) -> None:
    response = served.get(
        f"/{view}", headers={"X-Request-ID": f"dj-{view}", "X-User": "u-1", "X-Podcast": "p-1"}
    )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == f"dj-{view}"
    [event] = sentry_events.settle()
    assert event["tags"]["request_id"] == f"dj-{view}"
    assert event["user"] == {"id": "u-1"}
    assert event["contexts"]["business"] == {"podcast_id": "p-1", "action": "upload"}
    kind = view.split("-")[0]
    assert event["exception"]["values"][-1]["value"] == f"{kind} upload failed"


def test_concurrent_requests_never_see_each_others_context(
    served: httpx.Client, sentry_events: SentryEvents
) -> None:
    def fail(number: int) -> None:
        view = "/async-fails" if number % 2 else "/sync-fails"
        headers = {
            "X-Request-ID": f"r-{number}",
            "X-User": f"u-{number}",
            "X-Podcast": f"p-{number}",
        }
        assert served.get(view, headers=headers).status_code == 500

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, range(24)))
    events = sentry_events.settle()
    assert len(events) == 24
    for event in events:
        number = event["tags"]["request_id"].removeprefix("r-")
        assert event["user"] == {"id": f"u-{number}"}
        assert event["tags"]["podcast_id"] == f"p-{number}"
