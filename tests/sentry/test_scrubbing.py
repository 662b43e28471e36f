"""Scrubbing: credentials never leave the process, wherever they sit in an event.

Every test goes through ``init_sentry`` and the SDK's real transport, and
searches the whole event as received for the secret.
"""

from __future__ import annotations

from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    business_context,
    capture_message,
    scrub_event,
)
from asgi_sentry_ctx.sentry.scrubbing import FILTERED, is_sensitive_key
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import ProductionInit
from tests.events import as_json

SECRET = "s3cr3t-9f2b"

CREDENTIAL_HEADERS = [
    (b"authorization", f"Bearer {SECRET}".encode()),
    (b"cookie", f"session={SECRET}; theme=dark".encode()),
    (b"x-api-key", SECRET.encode()),
    (b"x-upstream-token", SECRET.encode()),
    (b"proxy-authorization", f"Basic {SECRET}".encode()),
    (b"x-csrf-token", SECRET.encode()),
]


class Boom(Exception):
    pass


def received(ingest: SentryIngest, count: int = 1) -> list[dict[str, Any]]:
    events = ingest.wait_for_events(count)
    for event in events:
        assert SECRET not in as_json(event)
    return events


class TestHeaders:
    async def test_credential_headers_are_masked_and_others_kept(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            capture_message("with headers")
            await ok(scope, receive, send)

        await request(
            SentryContextMiddleware(app),
            headers=[*CREDENTIAL_HEADERS, (b"user-agent", b"pytest-agent")],
        )
        [event] = received(ingest)
        headers = event["request"]["headers"]
        for name, _ in CREDENTIAL_HEADERS:
            assert headers[name.decode()] == FILTERED
        assert headers["user-agent"] == "pytest-agent"

    async def test_set_cookie_in_a_local_variable_is_masked(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            response_headers = [(b"set-cookie", f"session={SECRET}".encode())]
            raise Boom(f"could not send {len(response_headers)} headers")

        with pytest.raises(Boom):
            await request(SentryContextMiddleware(app))
        [event] = received(ingest)
        frame = event["exception"]["values"][0]["stacktrace"]["frames"][-1]
        assert frame["vars"]["response_headers"] == [["b'set-cookie'", FILTERED]]


class TestLocalVariables:
    async def test_the_asgi_scope_and_password_locals_in_frames_are_masked(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            db_password = SECRET
            api_token = SECRET
            attempts = 3
            raise Boom(
                f"database refused after {attempts} attempts ({len(db_password + api_token)})"
            )

        with pytest.raises(Boom):
            await request(SentryContextMiddleware(app), headers=CREDENTIAL_HEADERS)
        [event] = received(ingest)
        frames = event["exception"]["values"][0]["stacktrace"]["frames"]
        app_vars = frames[-1]["vars"]
        assert app_vars["db_password"] == FILTERED
        assert app_vars["api_token"] == FILTERED
        assert app_vars["attempts"] == "3"
        assert any("scope" in frame.get("vars", {}) for frame in frames)

    async def test_nested_secrets_in_locals_are_masked(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()
        config = {"database": {"url": "postgres://db", "Password": SECRET}, "retries": 2}
        settings = [{"name": "stripe", "secret_key": SECRET}]
        try:
            raise Boom(f"{len(config)} {len(settings)}")
        except Boom:
            sentry_sdk.capture_exception()
        [event] = received(ingest)
        frame_vars = event["exception"]["values"][0]["stacktrace"]["frames"][-1]["vars"]
        assert frame_vars["config"]["database"]["Password"] == FILTERED
        assert frame_vars["config"]["database"]["url"] == "'postgres://db'"
        assert frame_vars["settings"][0]["secret_key"] == FILTERED


class TestEventData:
    async def test_query_string_credentials_are_masked(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            capture_message("with a query")
            await ok(scope, receive, send)

        query = f"page=2&access_token={SECRET}&API_KEY={SECRET}&sort=asc".encode()
        await request(SentryContextMiddleware(app), query_string=query)
        [event] = received(ingest)
        assert event["request"]["query_string"] == (
            f"page=2&access_token={FILTERED}&API_KEY={FILTERED}&sort=asc"
        )

    async def test_request_body_cookies_and_env_are_scrubbed(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()
        sentry_sdk.capture_event(
            {
                "message": "with a body",
                "request": {
                    "url": "http://testserver/login",
                    "data": {
                        "username": "ann",
                        "password": SECRET,
                        "profile": {"recovery": {"backup_passphrase_secret": SECRET}},
                        "devices": [{"push_token": SECRET, "model": "phone"}],
                    },
                    "cookies": {"session": SECRET},
                    "env": {"DATABASE_PASSWORD": SECRET, "REMOTE_ADDR": "10.0.0.1"},
                },
            }
        )
        [event] = received(ingest)
        data = event["request"]["data"]
        assert data["username"] == "ann"
        assert data["password"] == FILTERED
        assert data["profile"]["recovery"]["backup_passphrase_secret"] == FILTERED
        assert data["devices"][0] == {"push_token": FILTERED, "model": "phone"}
        assert event["request"]["env"]["REMOTE_ADDR"] == "10.0.0.1"

    async def test_breadcrumb_data_is_scrubbed(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            add_breadcrumb(
                "login",
                data={"user": "ann", "password": SECRET, "oauth": {"refresh-token": SECRET}},
            )
            capture_message("after login")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        [event] = received(ingest)
        [login] = [c for c in event["breadcrumbs"]["values"] if c.get("message") == "login"]
        assert login["data"] == {
            "user": "ann",
            "password": FILTERED,
            "oauth": {"refresh-token": FILTERED},
        }

    async def test_extra_is_scrubbed(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()
        with sentry_sdk.isolation_scope():
            sentry_sdk.set_extra("smtp_password", SECRET)
            capture_message("with extra", api_key=SECRET, attempt=2)
        [event] = received(ingest)
        assert event["extra"]["api_key"] == FILTERED
        assert event["extra"]["smtp_password"] == FILTERED
        assert event["extra"]["attempt"] == 2

    async def test_contexts_are_scrubbed_but_business_is_kept_as_given(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production()
        with sentry_sdk.new_scope() as scope:
            scope.set_context("payment", {"provider": "stripe", "client_secret": SECRET})
            with business_context(podcast_id="p-1", upload_token="visible-by-choice"):
                capture_message("with contexts")
        [event] = received(ingest)
        assert event["contexts"]["payment"] == {"provider": "stripe", "client_secret": FILTERED}
        assert event["contexts"]["business"] == {
            "podcast_id": "p-1",
            "upload_token": "visible-by-choice",
        }


class TestTransactions:
    async def test_transactions_are_scrubbed_too(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(traces_sample_rate=1.0)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            sentry_sdk.set_extra("db_password", SECRET)
            await ok(scope, receive, send)

        await request(
            SentryContextMiddleware(SentryAsgiMiddleware(app)),
            headers=CREDENTIAL_HEADERS,
            query_string=f"token={SECRET}".encode(),
        )
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert SECRET not in as_json(transaction)
        assert transaction["extra"]["db_password"] == FILTERED
        assert transaction["request"]["query_string"] == f"token={FILTERED}"

    async def test_a_raising_before_send_transaction_keeps_the_transaction(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        def broken(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("bug")

        production(traces_sample_rate=1.0, before_send_transaction=broken)
        with sentry_sdk.isolation_scope(), sentry_sdk.start_transaction(name="job"):
            sentry_sdk.set_extra("api_token", SECRET)
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["transaction"] == "job"
        assert transaction["extra"]["api_token"] == FILTERED


class TestRules:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "db_password",
            "DB-PASSWORD",
            "passwd",
            "client_secret",
            "X-Upstream-Token",
            "api_key",
            "x-api-key",
            "apikey",
            "authorization",
            "set-cookie",
            "session_id",
            "private_key",
            "aws_credentials",
            "csrf",
            "signature",
        ],
    )
    def test_credential_like_keys_are_sensitive(self, key: str) -> None:
        assert is_sensitive_key(key)

    @pytest.mark.parametrize("key", ["username", "podcast_id", "user-agent", "content-type", "id"])
    def test_ordinary_keys_are_not(self, key: str) -> None:
        assert not is_sensitive_key(key)

    def test_scrub_event_never_fails_on_odd_shapes(self) -> None:
        event: dict[str, Any] = {
            "request": "not a dict",
            "breadcrumbs": [{"data": {"token": SECRET}}, "odd"],
            "extra": None,
            "contexts": {"odd": ["password", SECRET]},
            "exception": {"values": [None, {"stacktrace": None}, {"stacktrace": {"frames": [1]}}]},
        }
        scrubbed = scrub_event(event)
        assert scrubbed["breadcrumbs"][0]["data"] == {"token": FILTERED}
        assert scrubbed["contexts"]["odd"] == ["password", FILTERED]

    def test_deep_nesting_does_not_overflow(self) -> None:
        deep: dict[str, Any] = {"password": SECRET}
        for _ in range(500):
            deep = {"level": deep}
        assert scrub_event({"extra": deep})["extra"]["level"]
