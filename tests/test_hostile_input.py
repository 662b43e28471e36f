"""Hostile request-ID headers are replaced, and never echoed, logged or sent to Sentry."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from sentry_sdk.consts import DEFAULT_OPTIONS

from asgi_sentry_ctx import SentryContextMiddleware, capture_message, get_request_id
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import SentryInit
from tests.events import as_json
from tests.servers import serve

# Personal data allowed, so that nothing is held back that could carry the ID:
# ``data_collection`` where sentry-sdk has it (``send_default_pii`` before).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)

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
    sentry_init(**PII_ALLOWED, include_local_variables=True)
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


# Control characters are left out: uvicorn's own parser refuses them first.
@pytest.mark.parametrize("name", ["10kB", "non-ascii", "repeated", "space"])
def test_a_real_server_never_echoes_a_hostile_id(name: str, sentry_init: SentryInit) -> None:
    """Raw bytes on the wire, through uvicorn's own header parsing."""
    sentry_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (get_request_id() or "").encode()
        length = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": body})

    headers = b"".join(
        name + b": " + value.replace(b"\r\n", b"") + b"\r\n" for name, value in HOSTILE[name]
    )
    with serve(SentryContextMiddleware(app)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + headers + b"\r\n"
            )
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert MARKER.encode() not in raw
    assert head.startswith(b"HTTP/1.1 200")
    echoed = [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-request-id:")
    ]
    assert echoed == [body]
    assert len(body) == 32
