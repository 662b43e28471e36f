"""Parity with sentry-sdk's Litestar integration: the same requests, what Sentry receives.

The app is a Litestar app with an authentication middleware, served by
uvicorn; once as sentry-sdk's docs set it up (``sentry_sdk.init`` with its
auto-enabled integrations, ``LitestarIntegration`` among them, and no plugin
of ours), once as docs/litestar.md does (``init_sentry`` and
``SentryContextPlugin``). See ``tests/parity.py`` for what is compared. The
differences allowed are exactly the ones docs/litestar.md lists under
"Compared with sentry-sdk's integration", each an improvement.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    ServiceUnavailableException,
)
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.params import FromPath, FromQuery
from sentry_sdk.integrations.litestar import LitestarIntegration

from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit, SentryInit
from tests.parity import Difference, Probe, run_parity

# Compared with sentry-sdk's integrations as they are after 2.20 (the marker, in conftest).
pytestmark = pytest.mark.sdk_feature("reference_integrations")

ANN = {"authorization": "Bearer ann-token"}
# What Litestar's authentication puts in scope["user"]; without PII allowed
# the SDK sends no user, ours sends the id.
ACCOUNT = {"id": "7", "email": "ann@example.com", "roles": ["editor"]}
ANN_USER = {"id": "7"}


class TokenAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Any:
        if connection.headers.get("authorization") != ANN["authorization"]:
            raise NotAuthorizedException("unknown token")
        return AuthenticationResult(user=ACCOUNT, auth="ann-token")


def publish_failed(episode_id: int) -> None:
    raise RuntimeError(f"CDN refused episode {episode_id}")


@get("/episodes/{episode_id:int}/publish")
async def publish(episode_id: FromPath[int]) -> None:
    publish_failed(episode_id)


@get("/transcoder", name="transcoder-status")
async def transcoder() -> None:
    raise ServiceUnavailableException("transcoder down")


@get("/conflict")
async def conflict() -> None:
    raise HTTPException(status_code=409, detail="already published")


@get("/episodes/{episode_id:int}")
async def episode(episode_id: FromPath[int]) -> None:
    raise NotFoundException(f"no episode {episode_id}")


@get("/episodes")
async def episodes(page: FromQuery[int]) -> int:
    return page


@get("/ok")
async def ok() -> str:
    return "ok"


def app(**kwargs: Any) -> Litestar:
    """The app both set-ups serve; built after Sentry is initialised (the SDK patches
    ``Litestar.__init__``)."""
    return Litestar(
        route_handlers=[publish, transcoder, conflict, episode, episodes, ok],
        middleware=[TokenAuth],
        **kwargs,
    )


PROBES = [
    Probe("unhandled error", "/episodes/3/publish?draft=1", headers=ANN),
    Probe("http exception 503", "/transcoder", headers=ANN),
    Probe("http exception 409", "/conflict", headers=ANN),
    Probe("not found exception", "/episodes/999", headers=ANN),
    Probe("unknown path", "/no-such-page", headers=ANN),
    Probe("validation error", "/episodes?page=x", headers=ANN),
    Probe("unauthorized", "/ok"),
    Probe("ok", "/ok?page=2", headers=ANN),
    Probe("continued trace", "/episodes/4/publish", headers=ANN, continues_trace=True),
]
EVENTS = {
    "unhandled error": 1,
    "http exception 503": 1,
    "http exception 409": 0,
    "not found exception": 0,
    "unknown path": 0,
    "validation error": 0,
    "unauthorized": 0,
    "ok": 0,
    "continued trace": 1,
}

# docs/litestar.md, "Compared with sentry-sdk's integration": each is an improvement.
DIFFERENCES = [
    Difference("continued trace", "event[0].user", None, ANN_USER),
    Difference("http exception 503", "event[0].user", None, ANN_USER),
    # Rejected by the authentication middleware, before any route handler ran:
    # the SDK names it by its URL and sees no response (sent outside its
    # middleware); ours names it by its route and records the 401.
    Difference("unauthorized", "transaction[0].http_status", None, 401),
    Difference("unauthorized", "transaction[0].name", "http://server/ok", f"{__name__}.ok"),
    Difference("unauthorized", "transaction[0].source", "url", "component"),
    Difference("unauthorized", "transaction[0].status", "internal_error", "unauthenticated"),
    Difference("unhandled error", "event[0].user", None, ANN_USER),
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
        our_app=lambda: app(plugins=[SentryContextPlugin()]),
        probes=PROBES,
        app_modules=[__name__],
        integrations=[LitestarIntegration],
    )
    assert parity.sdk_events() == EVENTS
    assert parity.differences == DIFFERENCES


def test_events_are_named_by_the_route_handler_as_the_sdk_names_them(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """The handler's ``name=``, else its function's dotted path; source component."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: app(plugins=[SentryContextPlugin()]),
        probes=PROBES[:2],
        app_modules=[__name__],
        integrations=[LitestarIntegration],
    )
    for setup in (parity.sdk, parity.ours):
        error, unavailable = setup["unhandled error"], setup["http exception 503"]
        assert (error["event[0].transaction"], error["event[0].source"]) == (
            f"{__name__}.publish",
            "component",
        )
        assert (unavailable["transaction[0].name"], unavailable["transaction[0].source"]) == (
            "transcoder-status",
            "component",
        )
