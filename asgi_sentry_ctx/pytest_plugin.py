"""A pytest plugin for apps that use asgi-sentry-ctx: assert the events Sentry would receive.

Installed with the package (a ``pytest11`` entry point): no conftest needed.
The ``sentry_events`` fixture starts a loopback Sentry ingest
([`SentryIngest`][asgi_sentry_ctx.testing.SentryIngest]), initialises Sentry
against it with [`init_sentry`][asgi_sentry_ctx.init_sentry] (the SDK's real
HTTP transport, the library's noise filter and scrubbing), and afterwards puts
back the Sentry client that was in force before the test::

    def test_upload_failure_is_reported(sentry_events, client):
        response = client.post("/upload")
        event = sentry_events.one(request_id=sentry_events.request_id_of(response))
        assert event["tags"]["action"] == "upload"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx.sentry.init import init_sentry
from asgi_sentry_ctx.testing import SentryIngest

__all__ = ["SentryEvents", "sentry_events"]

Event = dict[str, Any]

# What a test wants by default: every event sent, no traces, nothing dropped
# because the SDK's queue filled up in a burst.
_TEST_OPTIONS: dict[str, Any] = {
    "environment": "test",
    "enable_in_dev": True,
    "traces_sample_rate": 0.0,
    "transport_queue_size": 10_000,
}


class SentryEvents:
    """The events Sentry received during one test, and ways to wait for them and find them.

    Sentry is already initialised when the test starts; call
    [`init`][asgi_sentry_ctx.pytest_plugin.SentryEvents.init] to initialise it
    again with the options your app uses.
    """

    def __init__(self, ingest: SentryIngest) -> None:
        self.ingest = ingest
        self._client: Any = None  # the client this fixture made, closed when replaced

    @property
    def dsn(self) -> str:
        """The loopback ingest's DSN."""
        return self.ingest.dsn

    def init(self, **options: Any) -> None:
        """Initialise Sentry against the ingest: ``init_sentry(dsn, **options)``.

        The test defaults (``environment="test"``, ``enable_in_dev=True``,
        ``traces_sample_rate=0.0``) apply unless ``options`` say otherwise.
        """
        self.close()
        if not init_sentry(self.dsn, **{**_TEST_OPTIONS, **options}):
            raise RuntimeError("asgi_sentry_ctx: init_sentry left Sentry off (see its log line)")
        self._client = sentry_sdk.get_client()

    def close(self) -> None:
        """Send what is queued and close the client this fixture made (the fixture does it)."""
        if self._client is not None:
            self._client.flush()
            self._client.close()
            self._client = None

    @property
    def events(self) -> list[Event]:
        """Every error and message event received so far, in arrival order."""
        return self.ingest.events

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[Event]:
        """Wait until at least ``count`` events arrived; return all of them.

        Raises ``TimeoutError`` naming how many arrived.
        """
        return self.ingest.wait_for_events(count, timeout)

    def settle(self, timeout: float = 10.0) -> list[Event]:
        """Send everything captured so far and return every event received.

        Nothing captured before this call is still in flight afterwards, so
        ``assert sentry_events.settle() == []`` says "no event was sent"
        without sleeping.
        """
        # The SDK's flush returns once its transport's queue is empty, and the
        # ingest records an envelope before it answers the POST.
        sentry_sdk.flush(timeout)
        return self.events

    def find(
        self,
        *,
        request_id: str | None = None,
        message: str | None = None,
        exception: type[BaseException] | str | None = None,
    ) -> list[Event]:
        """The events received so far that match every criterion given.

        ``request_id`` is the ``request_id`` tag; ``message`` is the event's
        message (or its log entry's); ``exception`` is the type (or the type's
        name) of the event's exception, the outermost one of a chain.
        """
        name = exception.__name__ if isinstance(exception, type) else exception
        return [
            event
            for event in self.settle()
            if (request_id is None or event.get("tags", {}).get("request_id") == request_id)
            and (message is None or _message(event) == message)
            and (name is None or _exception_type(event) == name)
        ]

    def one(self, **criteria: Any) -> Event:
        """The single event received that matches ``criteria`` (see ``find``); fails otherwise."""
        found = self.find(**criteria)
        if len(found) != 1:
            seen = [(_exception_type(e) or _message(e), e.get("tags", {})) for e in self.events]
            raise AssertionError(
                f"expected 1 event matching {criteria}, found {len(found)}; received: {seen}"
            )
        return found[0]

    @staticmethod
    def request_id_of(response: Any, header: str = "X-Request-ID") -> str:
        """The request ID a response carries (any response with ``headers``: httpx, Starlette's
        test client, requests); the ID to find its events by."""
        request_id = response.headers.get(header)
        if not request_id:
            raise AssertionError(f"the response has no {header} header")
        return str(request_id)


def _message(event: Event) -> str | None:
    message = event.get("message")
    if message is None:
        message = event.get("logentry", {}).get("message")
    return message if isinstance(message, str) else None


def _exception_type(event: Event) -> str | None:
    values = event.get("exception", {}).get("values") or []
    return values[-1].get("type") if values else None


@pytest.fixture
def sentry_events() -> Iterator[SentryEvents]:
    """Sentry initialised against a loopback ingest for this test.

    The client in force before the test is put back afterwards.
    """
    previous = sentry_sdk.get_global_scope().client
    with SentryIngest() as ingest:
        events = SentryEvents(ingest)
        events.init()
        try:
            yield events
        finally:
            events.close()
            sentry_sdk.get_global_scope().set_client(previous)
