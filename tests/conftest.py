"""Fixtures that start real things: a loopback Sentry ingest and the SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx.testing import SentryIngest

SentryInit = Callable[..., None]


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
    sentry_sdk.flush(5)
    sentry_sdk.get_client().close()
    # An empty DSN: ``init()`` alone would read SENTRY_DSN from the environment.
    sentry_sdk.init(dsn="")  # back to a disabled client for the next test
