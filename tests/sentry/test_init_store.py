"""``init_sentry(store=...)``: the local event store as the embedded default and as a buffer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sentry_sdk

from asgi_sentry_ctx import init_sentry
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.transport import StoreTransport
from asgi_sentry_ctx.testing import SentryIngest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SENTRY_DSN", "SENTRY_ENVIRONMENT", "ASGI_SENTRY_CTX_STORE"):
        monkeypatch.delenv(name, raising=False)
    yield
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.init()


def stats(path: Path) -> dict[str, int]:
    store = EventStore(path)
    try:
        return {k: v for k, v in store.stats().items() if k in ("pending", "sent", "local")}
    finally:
        store.close()


def test_with_a_store_and_no_dsn_sentry_is_on_locally_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    with caplog.at_level(logging.INFO, logger="asgi_sentry_ctx"):
        assert init_sentry(store=path)
    [message] = caplog.messages
    assert message.startswith("asgi_sentry_ctx: Sentry initialised (environment=production")
    assert message.endswith(f"events stay in the local store {path} (no DSN)")
    sentry_sdk.capture_message("kept here")
    assert stats(path) == {"pending": 0, "sent": 0, "local": 1}


def test_the_store_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASGI_SENTRY_CTX_STORE", str(tmp_path / "from-env.db"))
    assert init_sentry()
    sentry_sdk.capture_message("kept here")
    assert stats(tmp_path / "from-env.db")["local"] == 1


def test_with_a_dsn_and_a_store_events_go_through_the_store_to_sentry(
    tmp_path: Path, ingest: SentryIngest
) -> None:
    path = tmp_path / "events.db"
    assert init_sentry(ingest.dsn, store=path)
    assert isinstance(sentry_sdk.get_client().transport, StoreTransport)
    sentry_sdk.capture_message("forwarded")
    [event] = ingest.wait_for_events(1)
    sentry_sdk.flush(5)
    assert event["message"] == "forwarded"
    assert stats(path)["sent"] == 1


def test_in_a_development_environment_events_stay_in_the_store_even_with_a_dsn(
    tmp_path: Path, ingest: SentryIngest, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    with caplog.at_level(logging.INFO, logger="asgi_sentry_ctx"):
        assert init_sentry(ingest.dsn, store=path, environment="dev")
    assert "(environment 'dev' is a development one)" in caplog.messages[0]
    sentry_sdk.capture_message("stays local")
    sentry_sdk.flush(1)
    assert stats(path) == {"pending": 0, "sent": 0, "local": 1}
    assert ingest.requests == 0


def test_a_store_together_with_a_transport_leaves_sentry_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = StoreTransport(None, store=tmp_path / "other.db")
    assert not init_sentry(store=tmp_path / "events.db", transport=transport)
    assert "pass either store or transport, not both" in caplog.text


def test_an_unusable_store_path_leaves_sentry_off_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-dir" / "events.db"
    assert not init_sentry("http://public@127.0.0.1:9/1", store=missing)
    assert f"the event store {str(missing)!r} cannot be opened" in caplog.text


def test_without_dsn_or_store_the_log_names_both_ways_to_turn_it_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="asgi_sentry_ctx"):
        assert not init_sentry()
    assert "set SENTRY_DSN" in caplog.text
    assert "set ASGI_SENTRY_CTX_STORE" in caplog.text
