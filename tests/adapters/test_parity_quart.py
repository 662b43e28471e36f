"""Parity with sentry-sdk's Quart integration: the same requests, what Sentry receives.

The app is a Quart app with quart-auth (bearer tokens), served by uvicorn;
once as sentry-sdk's docs set it up (``sentry_sdk.init`` with its auto-enabled
integrations, ``QuartIntegration`` among them, and no ``init_app``), once as
docs/quart.md does (``init_sentry`` and ``init_app``). See
``tests/parity.py`` for what is compared. The differences allowed are exactly
the ones docs/quart.md lists under "Compared with sentry-sdk's integration",
each an improvement.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, abort
from quart_auth import QuartAuth, generate_auth_token, login_required
from sentry_sdk.integrations.quart import QuartIntegration
from werkzeug.exceptions import BadRequest

from asgi_sentry_ctx.adapters.quart import init_app
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit, SentryInit
from tests.parity import Difference, Probe, run_parity

SECRET = "test-only-secret"
USER_ID = "user-7"  # quart-auth's auth id; without PII allowed the SDK sends no user


def publish_failed(episode_id: int) -> None:
    raise RuntimeError(f"CDN refused episode {episode_id}")


def app(**adapter_options: Any) -> Quart:
    """The app both set-ups serve; with ``adapter_options``, ours (``init_app``)."""
    quart = Quart(__name__)
    quart.secret_key = SECRET
    quart.config["QUART_AUTH_MODE"] = "bearer"
    QuartAuth(quart)
    if adapter_options:
        init_app(quart, **adapter_options)

    @quart.get("/episodes/<int:episode_id>/publish")
    async def publish(episode_id: int) -> str:
        publish_failed(episode_id)
        return "published"

    @quart.get("/http-error/<int:status>")
    async def http_error(status: int) -> str:
        abort(status)

    @quart.get("/episodes")
    async def episodes() -> str:
        raise BadRequest("page must be a number")

    @quart.get("/private")
    @login_required
    async def private() -> str:
        return "secret"

    @quart.get("/ok")
    async def ok() -> str:
        return "ok"

    return quart


def bearer() -> dict[str, str]:
    """quart-auth's bearer token for ``USER_ID``, as the app would issue it."""
    quart = app()
    return {"authorization": f"Bearer {generate_auth_token(quart.test_client(), USER_ID)}"}


SIGNED_IN = bearer()
PROBES = [
    Probe("unhandled error", "/episodes/3/publish?draft=1", headers=SIGNED_IN),
    Probe("abort 503", "/http-error/503", headers=SIGNED_IN),
    Probe("abort 409", "/http-error/409", headers=SIGNED_IN),
    Probe("abort 404", "/http-error/404", headers=SIGNED_IN),
    Probe("unknown path", "/no-such-page", headers=SIGNED_IN),
    Probe("bad request", "/episodes?page=x", headers=SIGNED_IN),
    Probe("unauthorized", "/private"),
    Probe("ok", "/ok?page=2", headers=SIGNED_IN),
    Probe("continued trace", "/episodes/4/publish", headers=SIGNED_IN, continues_trace=True),
]
EVENTS = {
    "unhandled error": 1,
    "abort 503": 0,  # Quart signals no HTTPException: neither set-up reports it
    "abort 409": 0,
    "abort 404": 0,
    "unknown path": 0,
    "bad request": 0,
    "unauthorized": 0,
    "ok": 0,
    "continued trace": 1,
}


def differences_of(probe: str, query: str, sdk_headers: dict[str, Any]) -> list[Difference]:
    """docs/quart.md, "Compared with sentry-sdk's integration", for an event of ``probe``."""
    path = {"unhandled error": "/episodes/3/publish", "continued trace": "/episodes/4/publish"}
    ours_headers = {k: v for k, v in sdk_headers.items() if k != "remote-addr"}
    url = f"http://server{path[probe]}"
    # Quart's pseudo-header with the client's address, where the SDK sends it
    # (sentry-sdk 2.75 does, 2.76 does not); ours never does.
    headers = [Difference(probe, "event[0].request.headers", sdk_headers, ours_headers)]
    return [
        *(headers if "remote-addr" in sdk_headers else []),
        # Without a query, the SDK sends an empty query string; ours leaves it out.
        *([] if query else [Difference(probe, "event[0].request.query_string", "", None)]),
        *([Difference(probe, "event[0].request.url", f"{url}?{query}", url)] if query else []),
        Difference(probe, "event[0].user", None, {"id": USER_ID}),
    ]


def test_events_and_transactions_are_sentry_sdk_ones_plus_the_documented_improvements(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """Each request gives the SDK integration's events and transaction, but for the listed gains."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: app(transaction_style="endpoint"),
        probes=PROBES,
        app_modules=[__name__],
        integrations=[QuartIntegration],
    )
    assert parity.sdk_events() == EVENTS
    sdk_headers = {
        probe: parity.sdk[probe]["event[0].request.headers"]
        for probe in ("unhandled error", "continued trace")
    }
    assert parity.differences == [
        *differences_of("continued trace", "", sdk_headers["continued trace"]),
        *differences_of("unhandled error", "draft=1", sdk_headers["unhandled error"]),
        # No rule matched: the SDK names it by the full URL, with the server's
        # address; ours by the path ("/no-such-page", shown with the harness's
        # normalised origin).
        Difference(
            "unknown path",
            "transaction[0].name",
            "http://server/no-such-page",
            "//server/no-such-page",
        ),
    ]


def test_url_style_names_are_sentry_sdk_ones(
    sentry_init: SentryInit, production: ProductionInit, ingest: SentryIngest
) -> None:
    """With ``transaction_style="url"`` on both sides, names and sources are the SDK's."""
    parity = run_parity(
        ingest,
        sdk_init=sentry_init,
        our_init=production,
        sdk_app=app,
        our_app=lambda: app(transaction_style="url"),
        probes=[PROBES[0], PROBES[-2]],
        app_modules=[__name__],
        integrations=[QuartIntegration],
        sdk_options={"integrations": [QuartIntegration(transaction_style="url")]},
    )
    assert [d for d in parity.differences if d.field.startswith("transaction")] == []
    error = parity.ours["unhandled error"]
    assert (error["event[0].transaction"], error["event[0].source"]) == (
        "/episodes/<int:episode_id>/publish",
        "route",
    )
