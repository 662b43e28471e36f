"""Fixtures that start real things: a loopback Sentry ingest and the SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx import init_sentry
from asgi_sentry_ctx.testing import SentryIngest

SentryInit = Callable[..., None]
ProductionInit = Callable[..., None]


@pytest.fixture
def ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as server:
        yield server


@pytest.fixture
def sentry_init(ingest: SentryIngest) -> Iterator[SentryInit]:
    """Initialise the real SDK, with its real HTTP transport, sending to ``ingest``.

    Framework integrations stay off unless a test turns them on; the transport
    queue is large so that a burst of events is never dropped.
    """

    def init(**options: Any) -> None:
        settings: dict[str, Any] = {
            "dsn": ingest.dsn,
            "auto_enabling_integrations": False,
            "transport_queue_size": 10_000,
            **options,
        }
        sentry_sdk.init(**settings)

    yield init
    reset_sdk()


@pytest.fixture
def production(ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProductionInit]:
    """``init_sentry(**options)`` (our production set-up: noise filter, scrubbing,
    logging) sending to ``ingest``; fails the test if Sentry stays off."""
    for name in ("SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE", "SENTRY_PROFILES_SAMPLE_RATE"):
        monkeypatch.delenv(name, raising=False)

    def init(**options: Any) -> None:
        assert init_sentry(ingest.dsn, **options), "init_sentry left Sentry off"

    yield init
    reset_sdk()


def reset_sdk() -> None:
    """Send what is queued, then go back to a disabled client for the next test.

    Not ``sentry_sdk.init()``: it would read SENTRY_DSN from the environment,
    and set every integration up again (tens of milliseconds per test).
    """
    sentry_sdk.flush(5)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
