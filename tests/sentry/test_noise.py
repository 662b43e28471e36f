"""The noise filter: client errors never reach Sentry; everything else does, even if it breaks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sentry_sdk

from asgi_sentry_ctx import NoiseFilter, ignore_exception_types
from asgi_sentry_ctx.sentry.noise import _registered_types
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit, SentryInit
from tests.events import events_before_marker


class HTTPError(Exception):
    """Starlette, FastAPI and Litestar style: ``status_code``."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class WerkzeugError(Exception):
    """werkzeug (Quart) style: ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


class StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ValidationFailed(Exception):
    pass


class BrokenStatus(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("cannot tell")


def capture(exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:
        sentry_sdk.capture_exception()


@pytest.fixture
def registry() -> Iterator[None]:
    before = set(_registered_types)
    yield
    _registered_types.clear()
    _registered_types.update(before)


@pytest.mark.parametrize("status", [401, 403, 404, 422, 429])
@pytest.mark.parametrize("style", [HTTPError, WerkzeugError, StatusError])
def test_client_errors_are_dropped_by_default(
    status: int, style: type[Exception], production: ProductionInit, ingest: SentryIngest
) -> None:
    production()
    capture(style(status))
    assert events_before_marker(ingest) == []


@pytest.mark.parametrize("status", [400, 405, 500, 502, 503])
def test_other_statuses_are_kept(
    status: int, production: ProductionInit, ingest: SentryIngest
) -> None:
    production()
    capture(HTTPError(status))
    [event] = events_before_marker(ingest)
    assert event["exception"]["values"][0]["value"] == f"HTTP {status}"


def test_a_response_context_with_a_noise_status_is_dropped(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    production()
    sentry_sdk.capture_event(
        {"message": "slow 404", "contexts": {"response": {"status_code": 404}}}
    )
    assert events_before_marker(ingest) == []


def test_messages_and_plain_exceptions_are_kept(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    production()
    sentry_sdk.capture_message("a message")
    capture(ValueError("a bug"))
    message, error = events_before_marker(ingest)
    assert message["message"] == "a message"
    assert error["exception"]["values"][0]["type"] == "ValueError"


def test_status_codes_are_configurable(production: ProductionInit, ingest: SentryIngest) -> None:
    production(noise_status_codes={418})
    capture(HTTPError(418))
    capture(HTTPError(404))
    [event] = events_before_marker(ingest)
    assert event["exception"]["values"][0]["value"] == "HTTP 404"


def test_exception_types_are_configurable(production: ProductionInit, ingest: SentryIngest) -> None:
    production(noise_exception_types=[ValidationFailed])
    capture(ValidationFailed("bad input"))
    assert events_before_marker(ingest) == []


def test_registered_exception_types_are_noise_for_every_filter(
    registry: None, production: ProductionInit, ingest: SentryIngest
) -> None:
    class FrameworkNotFound(Exception):
        pass

    production()
    ignore_exception_types(FrameworkNotFound)
    capture(FrameworkNotFound())
    assert events_before_marker(ingest) == []


def test_subclasses_of_noise_types_are_noise(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    class Narrower(ValidationFailed):
        pass

    production(noise_exception_types=[ValidationFailed])
    capture(Narrower())
    assert events_before_marker(ingest) == []


def test_an_exception_inside_the_filter_keeps_the_event(
    production: ProductionInit, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
) -> None:
    production()
    with caplog.at_level(logging.DEBUG, logger="asgi_sentry_ctx"):
        capture(BrokenStatus("status unknown"))
        [event] = events_before_marker(ingest)
    assert event["exception"]["values"][0]["type"] == "BrokenStatus"
    failures = [
        r for r in caplog.records if r.name == "asgi_sentry_ctx" and r.levelno >= logging.WARNING
    ]
    assert len(failures) == 1
    assert "noise filter failed" in failures[0].getMessage()


def test_the_filter_works_as_a_plain_sdk_before_send(
    sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(before_send=NoiseFilter(status_codes={404}))
    capture(HTTPError(404))
    capture(HTTPError(429))
    [event] = events_before_marker(ingest)
    assert event["exception"]["values"][0]["value"] == "HTTP 429"


@pytest.mark.parametrize(
    ("exc", "noise"),
    [
        (HTTPError(404), True),
        (WerkzeugError(422), True),
        (ValidationFailed(), True),
        (HTTPError(500), False),
        (ValueError(), False),
    ],
)
def test_is_noise_reads_the_exception_of_the_hint(exc: BaseException, noise: bool) -> None:
    noise_filter = NoiseFilter(exception_types=[ValidationFailed])
    hint = {"exc_info": (type(exc), exc, None)}
    assert noise_filter.is_noise({}, hint) is noise


def test_a_boolean_or_out_of_range_status_is_no_status() -> None:
    class Odd(Exception):
        status_code = True
        code = 4040

    noise_filter = NoiseFilter(status_codes={1, 4040})
    exc = Odd()
    assert noise_filter.is_noise({}, {"exc_info": (Odd, exc, None)}) is False
