"""``init_sentry``: production defaults, one log line saying what happened, never a raise."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx import init_sentry
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import reset_sdk
from tests.events import events_before_marker


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "SENTRY_DSN",
        "SENTRY_ENVIRONMENT",
        "SENTRY_TRACES_SAMPLE_RATE",
        "SENTRY_PROFILES_SAMPLE_RATE",
        "SENTRY_RELEASE",
        "ASGI_SENTRY_CTX_ENABLE_DEV",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    reset_sdk()


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captures the library's own log records, from every level."""
    with caplog.at_level(logging.DEBUG, logger="asgi_sentry_ctx"):
        yield caplog


def ours(lines: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in lines.records if r.name == "asgi_sentry_ctx"]


def options() -> dict[str, Any]:
    return sentry_sdk.get_client().options


class TestDefaults:
    # sentry-sdk 2.7x deprecates transaction-based profiling, which a rate above 0 turns on.
    @pytest.mark.filterwarnings("ignore:Transaction-based profiling is deprecated")
    def test_dsn_environment_and_rates_come_from_the_environment(
        self, ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SENTRY_DSN", ingest.dsn)
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
        monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
        monkeypatch.setenv("SENTRY_PROFILES_SAMPLE_RATE", "0.5")
        assert init_sentry() is True
        assert options()["dsn"] == ingest.dsn
        assert options()["environment"] == "staging"
        assert options()["traces_sample_rate"] == 0.25
        assert options()["profiles_sample_rate"] == 0.5

    def test_production_defaults(self, ingest: SentryIngest) -> None:
        assert init_sentry(ingest.dsn) is True
        assert options()["environment"] == "production"
        assert options()["traces_sample_rate"] == 0.1
        assert options()["profiles_sample_rate"] == 0.0
        assert options()["max_breadcrumbs"] == 100
        assert options()["include_local_variables"] is True

    def test_keywords_override_the_environment_and_defaults(
        self, ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SENTRY_DSN", "http://other@127.0.0.1:1/2")
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
        monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
        assert init_sentry(
            ingest.dsn,
            environment="canary",
            traces_sample_rate=0.0,
            max_breadcrumbs=7,
            include_local_variables=False,
        )
        assert options()["dsn"] == ingest.dsn
        assert options()["environment"] == "canary"
        assert options()["traces_sample_rate"] == 0.0
        assert options()["max_breadcrumbs"] == 7
        assert options()["include_local_variables"] is False

    def test_traces_sample_rate_none_turns_tracing_off(
        self, ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``None``, given, is tracing off (as in ``sentry_sdk.init``), whatever the environment."""
        monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
        assert init_sentry(ingest.dsn, traces_sample_rate=None)
        assert options()["traces_sample_rate"] is None

    @pytest.mark.parametrize("environment", ["staging", "prod.eu-1", "Prod_2:blue", "e" * 64])
    def test_valid_environments_are_accepted(self, environment: str, ingest: SentryIngest) -> None:
        assert init_sentry(ingest.dsn, environment=environment) is True
        assert options()["environment"] == environment

    def test_logs_one_line_saying_it_is_initialised(
        self, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        init_sentry(ingest.dsn, environment="staging", traces_sample_rate=0.3)
        [line] = ours(lines)
        assert "initialised" in line
        assert "staging" in line
        assert "0.3" in line
        assert "max_breadcrumbs=100" in line


class TestDisabled:
    """Sentry stays off with one line saying why, and ``init_sentry`` never raises."""

    def test_no_dsn(self, lines: pytest.LogCaptureFixture) -> None:
        assert init_sentry() is False
        [line] = ours(lines)
        assert "disabled" in line
        assert "no DSN" in line
        assert sentry_sdk.get_client().transport is None

    @pytest.mark.parametrize("environment", ["dev", "development", "local", "test", "Testing"])
    def test_development_environment(
        self, environment: str, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        assert init_sentry(ingest.dsn, environment=environment) is False
        [line] = ours(lines)
        assert "disabled" in line
        assert repr(environment) in line
        assert "development" in line
        assert sentry_sdk.get_client().transport is None

    def test_development_environment_from_the_environment_variable(
        self, ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "local")
        assert init_sentry(ingest.dsn) is False

    @pytest.mark.parametrize("how", ["keyword", "variable"])
    def test_development_environment_can_be_enabled(
        self, how: str, ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if how == "variable":
            monkeypatch.setenv("ASGI_SENTRY_CTX_ENABLE_DEV", "1")
            assert init_sentry(ingest.dsn, environment="dev") is True
        else:
            assert init_sentry(ingest.dsn, environment="dev", enable_in_dev=True) is True
        assert options()["environment"] == "dev"

    @pytest.mark.parametrize(
        "dsn", ["not-a-dsn", "http://127.0.0.1/1", "ftp://key@host/1", "http://key@host/abc"]
    )
    def test_malformed_dsn(self, dsn: str, lines: pytest.LogCaptureFixture) -> None:
        assert init_sentry(dsn) is False
        [line] = ours(lines)
        assert "disabled" in line
        assert "DSN is malformed" in line
        assert sentry_sdk.get_client().transport is None

    def test_malformed_dsn_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, lines: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setenv("SENTRY_DSN", "https://sentry.example.com")
        assert init_sentry() is False
        [line] = ours(lines)
        assert "DSN is malformed" in line

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("SENTRY_TRACES_SAMPLE_RATE", "abc"),
            ("SENTRY_TRACES_SAMPLE_RATE", "1.5"),
            ("SENTRY_TRACES_SAMPLE_RATE", "-0.1"),
            ("SENTRY_TRACES_SAMPLE_RATE", "nan"),
            ("SENTRY_PROFILES_SAMPLE_RATE", "10%"),
            ("SENTRY_PROFILES_SAMPLE_RATE", "2"),
        ],
    )
    def test_malformed_or_out_of_range_rate(
        self,
        variable: str,
        value: str,
        ingest: SentryIngest,
        monkeypatch: pytest.MonkeyPatch,
        lines: pytest.LogCaptureFixture,
    ) -> None:
        monkeypatch.setenv(variable, value)
        assert init_sentry(ingest.dsn) is False
        [line] = ours(lines)
        assert "disabled" in line
        assert variable in line
        assert repr(value) in line
        assert sentry_sdk.get_client().transport is None

    @pytest.mark.parametrize("rate", ["half", 2, -1, True, [0.1]])
    def test_rate_given_as_a_keyword_must_be_a_number_from_0_to_1(
        self, rate: Any, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        assert init_sentry(ingest.dsn, traces_sample_rate=rate) is False
        [line] = ours(lines)
        assert "traces" in line.lower()

    @pytest.mark.parametrize(
        "environment",
        ["has space", "two\nlines", "prod/eu", ".", "..", "None", "a" * 65, "nul\x00", "bell\x07"],
    )
    def test_bad_environment(
        self, environment: str, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        assert init_sentry(ingest.dsn, environment=environment) is False
        [line] = ours(lines)
        assert "disabled" in line
        assert "environment" in line
        assert sentry_sdk.get_client().transport is None

    def test_a_failing_sdk_init_is_reported(
        self, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        assert init_sentry(ingest.dsn, data_collection="not a dict") is False
        [line] = ours(lines)
        assert "disabled" in line
        assert "sentry_sdk.init failed" in line


class TestBeforeSend:
    def test_the_users_before_send_runs_after_the_noise_filter(self, ingest: SentryIngest) -> None:
        seen: list[str] = []

        def mine(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
            seen.append(event.get("message") or event["exception"]["values"][0]["type"])
            event.setdefault("tags", {})["mine"] = "yes"
            return event

        class NotFound(Exception):
            status_code = 404

        init_sentry(ingest.dsn, before_send=mine)
        try:
            raise NotFound
        except NotFound:
            sentry_sdk.capture_exception()
        sentry_sdk.capture_message("real")
        [event] = events_before_marker(ingest)
        assert event["tags"]["mine"] == "yes"
        assert seen[0] == "real"
        assert "NotFound" not in seen

    def test_the_users_before_send_can_drop_an_event(self, ingest: SentryIngest) -> None:
        init_sentry(
            ingest.dsn,
            before_send=lambda event, hint: None if event.get("message") == "drop me" else event,
        )
        sentry_sdk.capture_message("drop me")
        assert events_before_marker(ingest) == []

    def test_a_raising_before_send_keeps_the_event_and_logs_once(
        self, ingest: SentryIngest, lines: pytest.LogCaptureFixture
    ) -> None:
        def broken(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("bug in before_send")

        init_sentry(ingest.dsn, before_send=broken)
        lines.clear()
        sentry_sdk.capture_message("kept")
        [event] = events_before_marker(ingest)
        assert event["message"] == "kept"
        failures = [r for r in lines.records if r.name == "asgi_sentry_ctx" and r.exc_info]
        # Once for "kept"; the marker that proves nothing else was sent fails too.
        assert len(failures) == 2
        assert "before_send raised" in failures[0].getMessage()


class TestLogging:
    def test_warnings_become_events_and_info_becomes_breadcrumbs(
        self, ingest: SentryIngest
    ) -> None:
        init_sentry(ingest.dsn)
        app_logger = logging.getLogger("tests.app")
        app_logger.setLevel(logging.INFO)
        try:
            app_logger.info("an info line")
            app_logger.warning("a warning line")
        finally:
            app_logger.setLevel(logging.NOTSET)
        [event] = ingest.wait_for_events(1)
        assert event["logentry"]["message"] == "a warning line"
        assert "an info line" in [c.get("message") for c in event["breadcrumbs"]["values"]]

    def test_the_librarys_own_logger_never_becomes_an_event(self, ingest: SentryIngest) -> None:
        init_sentry(ingest.dsn)
        logging.getLogger("asgi_sentry_ctx").error("asgi_sentry_ctx: something failed")
        assert events_before_marker(ingest) == []
