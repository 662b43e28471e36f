"""init_sentry turns off sentry-sdk's framework integrations (the middleware
owns the request), keeps them when asked, and says so when no middleware
owns a request."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from asgi_sentry_ctx.sentry import framework_integrations
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit
from tests.servers import serve


def integration(kind: type[Any]) -> Any:
    return sentry_sdk.get_client().get_integration(kind)


def test_the_framework_integrations_are_off_by_default(production: ProductionInit) -> None:
    """Starlette's and FastAPI's integrations are off; logging stays on."""
    production()

    assert integration(StarletteIntegration) is None
    assert integration(FastApiIntegration) is None
    assert integration(LoggingIntegration) is not None


def test_framework_integrations_true_keeps_them(production: ProductionInit) -> None:
    """``framework_integrations=True``: the SDK auto-enables them as usual."""
    production(framework_integrations=True)

    assert integration(StarletteIntegration) is not None
    assert integration(FastApiIntegration) is not None


def test_an_integration_passed_explicitly_stays_on(production: ProductionInit) -> None:
    """An integration the app passes is one it asked for."""
    production(integrations=[StarletteIntegration(transaction_style="endpoint")])

    assert integration(StarletteIntegration).transaction_style == "endpoint"
    assert integration(FastApiIntegration) is None


def test_the_apps_own_disabled_integrations_are_kept(production: ProductionInit) -> None:
    """``disabled_integrations`` of the app's are added to, not replaced."""
    production(disabled_integrations=[LoggingIntegration])

    disabled = sentry_sdk.get_client().options["disabled_integrations"]
    assert LoggingIntegration in disabled
    assert StarletteIntegration in disabled


@pytest.fixture
def no_middleware_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in which no middleware was ever constructed, warned of nothing."""
    monkeypatch.setattr(framework_integrations, "_middleware_seen", False)
    monkeypatch.setattr(framework_integrations, "_warned", False)


async def crash(request: Request) -> None:
    raise RuntimeError("no middleware here")


@pytest.mark.usefixtures("no_middleware_yet")
def test_without_the_middleware_errors_still_reach_sentry_and_a_warning_says_why(
    production: ProductionInit, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
) -> None:
    """Under uvicorn, an app that never installed the middleware still reports
    its error (through the server's error log), and one warning says what is missing."""
    production(traces_sample_rate=0.0)
    app = Starlette(routes=[Route("/crash", crash)])

    with serve(app) as url:
        for _ in range(2):
            assert httpx.get(f"{url}/crash").status_code == 500
        events = ingest.wait_for_events(2)

    assert [e["exception"]["values"][-1]["value"] for e in events] == ["no middleware here"] * 2
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "no SentryContextMiddleware" in r.getMessage()
    ]
    assert len(warnings) == 1
