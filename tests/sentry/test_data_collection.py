"""sentry-sdk's ``data_collection`` option, honoured by the library's request block and scrubbing.

Each test initialises Sentry through ``init_sentry(..., data_collection=...)``,
sends a real request through ``SentryContextMiddleware`` and reads the event
as the loopback ingest received it. The credential names the library masks
without the option stay masked in every mode; no secret is ever in the event.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import SentryContextMiddleware, capture_message, set_user
from asgi_sentry_ctx.context import request_data as request_data_module
from asgi_sentry_ctx.sentry import scrubbing
from asgi_sentry_ctx.sentry.scrubbing import FILTERED, DataCollection
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import ProductionInit
from tests.events import as_json, events_before_marker

pytestmark = pytest.mark.sdk_feature("data_collection")

SECRET = "s3cr3t-9f2b"  # a credential: masked in every mode
PRIVATE = "acme-corp"  # not a credential: masked only where the app's terms say

HEADERS = [
    (b"accept", b"application/json"),
    (b"user-agent", b"pytest-agent"),
    (b"authorization", f"Bearer {SECRET}".encode()),
    (b"cookie", f"sessionid={SECRET}; theme=dark; tracking_id={PRIVATE}; lang=en".encode()),
    (b"x-jwt-assertion", SECRET.encode()),  # on sentry-sdk's denylist ("jwt") only
    (b"x-upstream-signature", SECRET.encode()),  # on the library's list ("signature") only
    (b"x-tenant-id", PRIVATE.encode()),  # masked by a term of the app's
    (b"x-request-source", b"mobile"),
]
QUERY = f"token={SECRET}&page=2&email={PRIVATE}&q=podcasts".encode()


async def one_event(
    production: ProductionInit, ingest: SentryIngest, **data_collection: Any
) -> dict[str, Any]:
    """The event of one request that captures a message, under ``data_collection``;
    the credential in ``HEADERS`` and ``QUERY`` is nowhere in it."""
    production(data_collection=data_collection)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        capture_message("with request data")
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app), headers=HEADERS, query_string=QUERY)
    [event] = ingest.wait_for_events(1)
    assert SECRET not in as_json(event)
    return event


class TestHeaders:
    async def test_off_sends_no_headers(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(production, ingest, http_headers={"request": {"mode": "off"}})
        assert "headers" not in event["request"]
        assert event["request"]["url"] == "http://testserver/"  # the host is still read
        assert event["request"]["method"] == "GET"

    async def test_denylist_masks_the_sdks_terms_the_apps_and_the_librarys(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production, ingest, http_headers={"request": {"mode": "denylist", "terms": ["tenant"]}}
        )
        assert event["request"]["headers"] == {
            "host": "testserver",
            "accept": "application/json",
            "user-agent": "pytest-agent",
            "authorization": FILTERED,
            "cookie": FILTERED,
            "x-jwt-assertion": FILTERED,
            "x-upstream-signature": FILTERED,
            "x-tenant-id": FILTERED,
            "x-request-source": "mobile",
        }

    async def test_denylist_is_the_default_mode(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(data_collection={"user_info": False})  # no http_headers: a denylist

        async def app(scope: Any, receive: Any, send: Any) -> None:
            capture_message("with request data")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=HEADERS)
        [event] = ingest.wait_for_events(1)
        headers = event["request"]["headers"]
        assert headers["x-tenant-id"] == PRIVATE  # no term of the app's names it
        assert headers["accept"] == "application/json"
        assert headers["x-jwt-assertion"] == headers["x-upstream-signature"] == FILTERED
        assert headers["authorization"] == headers["cookie"] == FILTERED

    async def test_allowlist_keeps_only_the_named_headers_values(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production,
            ingest,
            http_headers={"request": {"mode": "allowlist", "terms": ["accept", "x-request-"]}},
        )
        assert event["request"]["headers"] == {
            "host": FILTERED,
            "accept": "application/json",
            "user-agent": FILTERED,
            "authorization": FILTERED,
            "cookie": FILTERED,
            "x-jwt-assertion": FILTERED,
            "x-upstream-signature": FILTERED,
            "x-tenant-id": FILTERED,
            "x-request-source": "mobile",
        }

    async def test_allowlist_never_keeps_a_credential_even_when_named(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production,
            ingest,
            http_headers={
                "request": {"mode": "allowlist", "terms": ["authorization", "x-upstream"]}
            },
        )
        headers = event["request"]["headers"]
        assert headers["authorization"] == headers["x-upstream-signature"] == FILTERED
        assert headers["x-request-source"] == FILTERED  # not named


class TestCookies:
    async def test_off_sends_no_cookies(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(production, ingest, cookies={"mode": "off"})
        assert "cookies" not in event["request"]
        assert event["request"]["headers"]["cookie"] == FILTERED

    async def test_denylist_sends_each_cookie_with_sensitive_ones_masked(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production, ingest, cookies={"mode": "denylist", "terms": ["tracking"]}
        )
        assert event["request"]["cookies"] == {
            "sessionid": FILTERED,
            "theme": "dark",
            "tracking_id": FILTERED,
            "lang": "en",
        }
        assert event["request"]["headers"]["cookie"] == FILTERED  # the raw header, as the SDK

    async def test_allowlist_keeps_only_the_named_cookies_values(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production, ingest, cookies={"mode": "allowlist", "terms": ["theme", "session"]}
        )
        assert event["request"]["cookies"] == {
            "sessionid": FILTERED,  # named, but sensitive
            "theme": "dark",
            "tracking_id": FILTERED,
            "lang": FILTERED,
        }


class TestQueryString:
    async def test_off_drops_the_query_string(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(production, ingest, url_query_params={"mode": "off"})
        assert "query_string" not in event["request"]
        assert event["request"]["url"] == "http://testserver/"

    async def test_denylist_masks_sensitive_and_named_parameters(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production, ingest, url_query_params={"mode": "denylist", "terms": ["email"]}
        )
        assert event["request"]["query_string"] == (
            f"token={FILTERED}&page=2&email={FILTERED}&q=podcasts"
        )

    async def test_allowlist_keeps_only_the_named_parameters_values(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        event = await one_event(
            production, ingest, url_query_params={"mode": "allowlist", "terms": ["page", "token"]}
        )
        assert event["request"]["query_string"] == (
            f"token={FILTERED}&page=2&email={FILTERED}&q={FILTERED}"
        )


class TestUserFields:
    @pytest.mark.parametrize("user_info", [False, True])
    async def test_user_info_decides_email_username_and_ip(
        self, production: ProductionInit, ingest: SentryIngest, user_info: bool
    ) -> None:
        production(data_collection={"user_info": user_info})

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_user("u-1", email="alice@example.com", username="alice", plan="pro")
            capture_message("set explicitly")
            await ok(scope, receive, send)

        def extractor(scope: Any) -> dict[str, Any]:
            return {"id": "u-2", "email": "bob@example.com", "name": "bob"}

        async def resolved(scope: Any, receive: Any, send: Any) -> None:
            capture_message("resolved lazily")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        await request(SentryContextMiddleware(resolved, user_extractor=extractor))
        explicit, lazy = ingest.wait_for_events(2)
        if user_info:
            assert explicit["user"] == {
                "id": "u-1",
                "email": "alice@example.com",
                "username": "alice",
                "plan": "pro",
            }
            assert lazy["user"] == {"id": "u-2", "email": "bob@example.com", "username": "bob"}
        else:
            assert explicit["user"] == {"id": "u-1", "plan": "pro"}
            assert lazy["user"] == {"id": "u-2"}

    async def test_without_user_info_a_user_set_on_the_sdk_loses_its_pii_too(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(data_collection={"user_info": False})
        with sentry_sdk.isolation_scope():  # the job's own: the user must not outlive the test
            sentry_sdk.set_user(
                {"id": "job-7", "email": "ops@example.com", "ip_address": "10.0.0.1"}
            )
            capture_message("from a background job")
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "job-7"}


class TestWithTheSdksOwnMiddleware:
    async def test_the_sdks_request_block_gets_the_same_rules(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(
            data_collection={
                "http_headers": {"request": {"mode": "denylist", "terms": ["tenant"]}},
                "cookies": {"mode": "off"},
                "url_query_params": {"mode": "allowlist", "terms": ["page"]},
            }
        )

        async def app(scope: Any, receive: Any, send: Any) -> None:
            capture_message("inside both")
            await ok(scope, receive, send)

        app_with_sdk = SentryAsgiMiddleware(SentryContextMiddleware(app))
        await request(app_with_sdk, headers=HEADERS, query_string=QUERY)
        [event] = ingest.wait_for_events(1)
        assert SECRET not in as_json(event)
        headers = event["request"]["headers"]
        assert headers["x-upstream-signature"] == headers["x-tenant-id"] == FILTERED
        assert headers["accept"] == "application/json"
        assert "cookies" not in event["request"]
        assert "page=2" in event["request"]["query_string"]


class TestReadOncePerEvent:
    async def test_the_option_is_read_once_per_event_and_never_without_one(
        self,
        production: ProductionInit,
        ingest: SentryIngest,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        production(data_collection={"http_headers": {"request": {"mode": "allowlist"}}})
        reads: list[DataCollection | None] = []
        real = scrubbing.data_collection

        def counted() -> DataCollection | None:
            reads.append(real())
            return reads[-1]

        monkeypatch.setattr(request_data_module, "data_collection", counted)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/report":
                capture_message("one event")
            await ok(scope, receive, send)

        middleware = SentryContextMiddleware(app)
        await request(middleware, "/quiet", headers=HEADERS)
        assert events_before_marker(ingest) == []
        assert reads == []  # a request that reports nothing never reads it
        ingest.clear()
        await request(middleware, "/report", headers=HEADERS)
        assert len(events_before_marker(ingest)) == 1
        assert len(reads) == 1  # one read for nine headers


def test_init_sentry_passes_data_collection_without_a_deprecation_warning(
    production: ProductionInit,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        production(data_collection={"user_info": False})
    resolved = sentry_sdk.get_client().options["data_collection"]
    assert resolved["provided_by_user"] is True
    assert resolved["user_info"] is False
    assert sentry_sdk.get_client().options["send_default_pii"] is None
