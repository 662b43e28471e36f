"""Parity with sentry-sdk's Starlette integration: the same requests, what Sentry receives.

The app is a Starlette app with ``AuthenticationMiddleware``, served by
uvicorn; once as sentry-sdk's docs set it up (``sentry_sdk.init`` with its
auto-enabled integrations), once as ours do (``init_sentry`` and
``install``). See ``tests/parity.py`` for what is compared. The differences
allowed are exactly the ones docs/starlette.md lists under "Compared with
sentry-sdk's integration", each an improvement.
"""

from __future__ import annotations

from typing import Any

import pytest
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.starlette import StarletteIntegration
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from asgi_sentry_ctx.adapters.starlette import install
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit, SentryInit
from tests.parity import Difference, Probe, run_parity
from tests.starlette_apps import TokenBackend

# Compared with sentry-sdk's integrations as they are after 2.20 (the marker, in conftest).
pytestmark = pytest.mark.sdk_feature("reference_integrations")

ALICE = {"authorization": "Bearer alice-token"}
ALICE_USER = {"id": "alice"}  # SimpleUser("alice"): the SDK sends no user without PII
PII_USER = {"id": "alice", "username": "alice"}
# Personal data allowed: ``data_collection`` where sentry-sdk has it, else ``send_default_pii``.
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)


async def publish(request: Request) -> Response:
    raise RuntimeError(f"transcoder crashed for {request.path_params['podcast_id']}")


async def http_error(request: Request) -> Response:
    raise HTTPException(status_code=request.path_params["status"])


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def app() -> Starlette:
    """The app both set-ups serve; build it after Sentry is initialised."""
    return Starlette(
        routes=[
            Route("/podcasts/{podcast_id}/publish", publish, methods=["POST"]),
            Route("/http-error/{status:int}", http_error),
            Route("/ok", ok),
            Mount("/orgs/{org}", routes=[Route("/podcasts/{podcast_id}/publish", publish)]),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=TokenBackend())],
    )


PROBES = [
    Probe("unhandled error", "/podcasts/7/publish?draft=1", method="POST", headers=ALICE),
    Probe("http exception 503", "/http-error/503", headers=ALICE),
    Probe("http exception 401", "/http-error/401"),
    Probe("not found", "/no-such-page"),
    Probe("ok", "/ok?page=2", headers=ALICE),
    Probe("continued trace", "/podcasts/8/publish", method="POST", continues_trace=True),
    Probe("mounted route", "/orgs/acme/podcasts/9/publish"),
]
EVENTS = {
    "unhandled error": 1,
    "http exception 503": 1,
    "http exception 401": 0,
    "not found": 0,
    "ok": 0,
    "continued trace": 1,
    "mounted route": 1,
}

MOUNTED = "/orgs/{org}/podcasts/{podcast_id}/publish"
SDK_MOUNTED = "generic Starlette request"  # the SDK finds no route under a Mount

# docs/starlette.md, "Compared with sentry-sdk's integration": each is an improvement.
URL_STYLE_DIFFERENCES = [
    Difference("http exception 503", "event[0].user", None, ALICE_USER),
    Difference("mounted route", "event[0].transaction", SDK_MOUNTED, MOUNTED),
    Difference("mounted route", "transaction[0].name", SDK_MOUNTED, MOUNTED),
    Difference("unhandled error", "event[0].user", None, ALICE_USER),
]
# With the endpoint style, a request that matched no route: the SDK names it after
# one of Starlette's middleware classes; we name it by its URL.
ENDPOINT_STYLE_DIFFERENCES = [
    Difference("http exception 503", "event[0].user", None, ALICE_USER),
    Difference(
        "not found",
        "transaction[0].name",
        "starlette.middleware.exceptions.ExceptionMiddleware",
        "http://server/no-such-page",
    ),
    Difference("not found", "transaction[0].source", "component", "url"),
    Difference("unhandled error", "event[0].user", None, ALICE_USER),
]


def test_events_and_transactions_are_sentry_sdk_ones_plus_the_documented_improvements(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """Each request gives the SDK integration's events and transaction, but for the listed gains."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: install(app()),
        probes=PROBES,
        app_modules=[__name__],
        integrations=[StarletteIntegration],
    )
    assert parity.sdk_events() == EVENTS
    assert parity.differences == URL_STYLE_DIFFERENCES


def test_endpoint_style_names_are_sentry_sdk_ones(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """With ``transaction_style="endpoint"`` on both sides, names and sources are the SDK's."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: install(app(), transaction_style="endpoint"),
        probes=PROBES,
        app_modules=[__name__],
        integrations=[StarletteIntegration],
        sdk_options={"integrations": [StarletteIntegration(transaction_style="endpoint")]},
    )
    assert parity.differences == ENDPOINT_STYLE_DIFFERENCES
    assert parity.ours["unhandled error"]["transaction[0].name"] == f"{__name__}.publish"


def test_with_personal_data_allowed_our_user_adds_the_id(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """With PII allowed on both sides, the SDK's user (a name only) is in ours, with an id."""
    pii = PII_ALLOWED
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: install(app()),
        probes=[probe for probe in PROBES if probe.name in ("unhandled error", "ok")],
        app_modules=[__name__],
        integrations=[StarletteIntegration],
        sdk_options=pii,
        our_options=pii,
    )
    assert parity.differences == [
        Difference("unhandled error", "event[0].user", {"username": "alice"}, PII_USER),
    ]
