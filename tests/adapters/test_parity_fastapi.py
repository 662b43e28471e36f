"""Parity with sentry-sdk's FastAPI integration: the same requests, what Sentry receives.

A FastAPI app with an ``HTTPBearer`` auth dependency, an ``APIRouter`` with a
prefix and a mounted sub-application, served by uvicorn; once as
sentry-sdk's docs set it up (``sentry_sdk.init`` with its auto-enabled
integrations, the plain dependency), once as ours do (``init_sentry``,
``bind_user`` on the dependency, ``install``). See ``tests/parity.py`` for
what is compared. The differences allowed are exactly the ones
docs/fastapi.md lists under "Compared with sentry-sdk's integration", each an
improvement. (Not ``from __future__ import annotations``: FastAPI reads the
annotations of the endpoints declared in ``app``.)
"""

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration

from asgi_sentry_ctx.adapters.fastapi import bind_user, install
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit, SentryInit
from tests.parity import Difference, Probe, run_parity
from tests.starlette_apps import USERS, User

# Compared with sentry-sdk's integrations as they are after 2.20 (the marker, in conftest).
pytestmark = pytest.mark.sdk_feature("reference_integrations")

ALICE = {"authorization": "Bearer alice-token"}
FORGED = {"authorization": "Bearer forged"}
ALICE_USER = {"id": "u-alice"}  # what bind_user binds; the SDK has no user from a dependency

bearer = HTTPBearer()


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> User:
    user = USERS.get(credentials.credentials)
    if user is None:
        raise HTTPException(401, "invalid token")
    return user


def app(bind: Callable[[Any], Any] = lambda dependency: dependency) -> FastAPI:
    """The app both set-ups serve, its auth dependency wrapped by ``bind``."""
    CurrentUser = Annotated[User, Depends(bind(current_user))]
    application = FastAPI()

    @application.post("/podcasts/{podcast_id}/publish")
    async def publish(podcast_id: int, user: CurrentUser) -> None:
        raise RuntimeError(f"transcoder crashed for {podcast_id}")

    @application.get("/http-error/{status}")
    async def http_error(status: int, user: CurrentUser) -> None:
        raise HTTPException(status)

    @application.get("/ok")
    async def ok(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id}

    router = APIRouter(prefix="/v2")

    @router.get("/episodes/{episode_id}")
    async def episode(episode_id: int, user: CurrentUser) -> None:
        raise RuntimeError(f"episode {episode_id} unreadable")

    application.include_router(router)
    reports = FastAPI()

    @reports.get("/weekly/{week}")
    async def weekly(week: int) -> None:
        raise RuntimeError(f"report {week} failed")

    application.mount("/reports", reports)
    return application


PROBES = [
    Probe("unhandled error", "/podcasts/7/publish?draft=1", method="POST", headers=ALICE),
    Probe("http exception 503", "/http-error/503", headers=ALICE),
    Probe("rejected token 401", "/ok", headers=FORGED),
    Probe("not found", "/no-such-page"),
    Probe("validation error", "/podcasts/seven/publish", method="POST", headers=ALICE),
    Probe("ok", "/ok?page=2", headers=ALICE),
    Probe(
        "continued trace", "/podcasts/8/publish", method="POST", headers=ALICE, continues_trace=True
    ),
    Probe("router prefix", "/v2/episodes/9", headers=ALICE),
    Probe("mounted app", "/reports/weekly/12"),
]
EVENTS = {
    "unhandled error": 1,
    "http exception 503": 1,
    "rejected token 401": 0,
    "not found": 0,
    "validation error": 0,
    "ok": 0,
    "continued trace": 1,
    "router prefix": 1,
    "mounted app": 1,
}

WEEKLY = "/weekly/{week}"  # the SDK's name: the mount's prefix is lost
MOUNTED = "/reports/weekly/{week}"

# docs/fastapi.md, "Compared with sentry-sdk's integration": each is an improvement.
URL_STYLE_DIFFERENCES = [
    Difference("continued trace", "event[0].user", None, ALICE_USER),
    Difference("http exception 503", "event[0].user", None, ALICE_USER),
    Difference("mounted app", "event[0].transaction", WEEKLY, MOUNTED),
    Difference("mounted app", "transaction[0].name", WEEKLY, MOUNTED),
    Difference("router prefix", "event[0].user", None, ALICE_USER),
    Difference("unhandled error", "event[0].user", None, ALICE_USER),
]
# With the endpoint style, a request that matched no route: the SDK names it after
# one of FastAPI's middleware classes; we name it by its URL.
ENDPOINT_STYLE_DIFFERENCES = [
    Difference("continued trace", "event[0].user", None, ALICE_USER),
    Difference("http exception 503", "event[0].user", None, ALICE_USER),
    Difference(
        "not found",
        "transaction[0].name",
        "fastapi.middleware.asyncexitstack.AsyncExitStackMiddleware",
        "http://server/no-such-page",
    ),
    Difference("not found", "transaction[0].source", "component", "url"),
    Difference("router prefix", "event[0].user", None, ALICE_USER),
    Difference("unhandled error", "event[0].user", None, ALICE_USER),
]
INTEGRATIONS = [StarletteIntegration, FastApiIntegration]


def test_events_and_transactions_are_sentry_sdk_ones_plus_the_documented_improvements(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """Each request gives the SDK integration's events and transaction, but for the listed gains."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: install(app(bind_user)),
        probes=PROBES,
        app_modules=[__name__],
        integrations=INTEGRATIONS,
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
        our_app=lambda: install(app(bind_user), transaction_style="endpoint"),
        probes=PROBES,
        app_modules=[__name__],
        integrations=INTEGRATIONS,
        sdk_options={
            "integrations": [
                StarletteIntegration(transaction_style="endpoint"),
                FastApiIntegration(transaction_style="endpoint"),
            ]
        },
    )
    assert parity.differences == ENDPOINT_STYLE_DIFFERENCES
    name = parity.ours["unhandled error"]["transaction[0].name"]
    assert name == f"{__name__}.app.<locals>.publish"
