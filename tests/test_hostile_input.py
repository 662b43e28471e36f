"""Hostile request-ID headers are replaced, and never echoed, logged or sent to Sentry."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asgi_sentry_ctx import SentryContextMiddleware, capture_message, get_request_id
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit
from tests.events import as_json

# Every hostile value contains this marker, so that any trace of it, whole or
# truncated, escaped or not, is found wherever it lands.
MARKER = "zq7hostile"

HOSTILE = {
    "crlf": [(b"x-request-id", b"zq7hostile\r\nSet-Cookie: stolen=1")],
    "control-characters": [(b"x-request-id", b"zq7hostile\x00\x1b[31m\x07\x7f")],
    "10kB": [(b"x-request-id", b"zq7hostile" + b"a" * 10_000)],
    "non-ascii": [(b"x-request-id", "zq7hostile-équipe".encode() + b"\xff\xfe")],
    "repeated": [(b"x-request-id", b"zq7hostile-1"), (b"x-request-id", b"zq7hostile-2")],
    "space": [(b"x-request-id", b"zq7hostile id")],
}


class Boom(Exception):
    pass


async def run_hostile(headers: list[tuple[bytes, bytes]]) -> tuple[Any, list[str | None]]:
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_request_id())
        capture_message("inside")
        if scope["path"] == "/fail":
            raise Boom("failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = SentryContextMiddleware(app)
    response = await request(wrapped, "/ok", headers=headers)
    with pytest.raises(Boom):
        await request(wrapped, "/fail", headers=headers)
    return response, seen


@pytest.fixture(params=list(HOSTILE), ids=list(HOSTILE))
def hostile(request: pytest.FixtureRequest) -> list[tuple[bytes, bytes]]:
    return HOSTILE[request.param]


async def test_hostile_id_is_replaced_by_a_fresh_one(
    hostile: list[tuple[bytes, bytes]], sentry_init: SentryInit
) -> None:
    sentry_init()
    _, seen = await run_hostile(hostile)
    assert all(rid is not None and len(rid) == 32 and MARKER not in rid for rid in seen)
    assert seen[0] != seen[1]


async def test_hostile_id_is_never_echoed(
    hostile: list[tuple[bytes, bytes]], sentry_init: SentryInit
) -> None:
    sentry_init()
    response, seen = await run_hostile(hostile)
    assert response.header("x-request-id") == [seen[0]]
    assert MARKER.encode() not in b"".join(value for _, value in response.raw_headers)


async def test_hostile_id_is_never_sent_to_sentry(
    hostile: list[tuple[bytes, bytes]], sentry_init: SentryInit, ingest: SentryIngest
) -> None:
    sentry_init(send_default_pii=True, include_local_variables=True)
    _, seen = await run_hostile(hostile)
    events = ingest.wait_for_events(3)
    assert len(events) == 3
    assert [e["tags"]["request_id"] for e in events] == [seen[0], seen[1], seen[1]]
    for event in events:
        assert MARKER not in as_json(event)


async def test_hostile_id_is_never_logged(
    hostile: list[tuple[bytes, bytes]],
    sentry_init: SentryInit,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sentry_init()
    with caplog.at_level(logging.DEBUG):
        await run_hostile(hostile)
    for record in caplog.records:
        assert MARKER not in record.getMessage()
        assert MARKER not in (record.exc_text or "")
