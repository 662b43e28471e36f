"""On a real server, a request's events never carry the previous request's context.

Servers can start a request in a copy of *another* request's context:

- uvicorn on the asyncio loop, after a request whose body was big enough to
  pause reading: CPython's selector transport re-registers the socket reader
  with the context current at ``resume_reading``, the previous request's, and
  the connection's next request starts in a copy of it (python/cpython#140947,
  uvicorn#2167);
- uvicorn starts a pipelined request from the previous request's task, in a
  copy of its context (uvicorn#3158).

A middleware that forks "the current Sentry isolation scope" then forks the
previous request's: its user, tags, business context, breadcrumbs and request
ID end up on the next request's events. Here every supported server set-up
gets the same two requests on one connection, written by hand on a raw socket
so that the condition is forced rather than hoped for:

1. ``POST /first`` as ``user-1``, with a body of 10 B or 200 kB: it opens a
   ``business_context`` block, sets a tag, a breadcrumb, the user and a canary
   context variable, reads its whole body, then sets the user, the tag
   ``t=first`` and the business field ``podcast_id=p1``, and answers 200;
2. ``GET /second``, anonymous (a leaked user shows only on a request without
   one of its own: its own user is written over the leaked one): sets its own
   business field and breadcrumb, and raises.

The second request goes on the same keep-alive connection after the first
response arrived, or pipelined (both written at once before reading). The
event of ``/second``, as the loopback ingest receives it, must carry its own
context and nothing of ``/first``. The canary proves the condition was real:
an outermost ASGI wrapper (``CanaryAtEntry``, outside everything the library
and the framework install) notes whether the server started ``/second`` with
the canary that ``/first`` set; the app puts that, and what it sees itself,
in the exception's message, so it arrives with the event (also from granian,
which runs the app in a subprocess). Where the server hands the context over
is asserted exactly (``HANDS_OVER``); what the app itself sees of the canary is
only reported: the library owns the Sentry context, not the app's variables.

A websocket opened right after a 200 kB upload gets the same checks, upgraded
on the upload's connection or opened on a new one: uvicorn on asyncio starts
the first in the upload's context; a new connection inherits nothing anywhere.

Before the fix, which of ``/first``'s fields reached ``/second`` depended on
timing where the server handed the context over: the copy is taken at the last
``resume_reading``, in ``receive`` (the scopes, the user, the tags, the
business block) or, when reading was paused once more, in the response's last
``send`` (the business block only). That the context is handed over does not
depend on timing; the tests assert that no field ever arrives.

Not ``from __future__ import annotations``: FastAPI evaluates the annotations
of the endpoints declared in ``fastapi_app``.
"""

import base64
import contextvars
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from io import BufferedReader
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

import pytest
import sentry_sdk
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    business_context,
    get_request_id,
    init_sentry,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.adapters.fastapi import bind_user, install
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import lifespan
from tests.conftest import reset_sdk
from tests.servers import serve

Scope = MutableMapping[str, Any]

# --- what the first request leaves behind, and how the test recognises it --------------

CANARY: contextvars.ContextVar[str] = contextvars.ContextVar("tests.canary", default="unset")
CANARY_SET = "set-by-first"
ENTRY_KEY = "tests.canary_at_entry"  # where CanaryAtEntry notes it in the ASGI scope

FIRST_USER = "user-1"
FIRST_TAGS = {"early": "first", "t": "first"}
FIRST_BUSINESS = {"block": "first-block", "podcast_id": "p1"}
FIRST_CRUMBS = ("/first: before its body", "/first: after its body")
SECOND_BUSINESS = {"episode_id": "e2"}
TOKENS = {"token-1": FIRST_USER}

BODY_SIZES = {"10B": 10, "200kB": 200_000}
DELIVERIES = ("keep-alive", "pipelined")
SERVERS = (
    "uvicorn-asyncio-h11",
    "uvicorn-asyncio-httptools",
    "uvicorn-uvloop-httptools",
    "hypercorn",
    "granian",
)
APPS = ("raw-asgi", "fastapi")


class CanaryAtEntry:
    """What the server runs: notes the canary it started the request with, then
    calls the app (a raw app in the middleware, or a FastAPI app after ``install``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope[ENTRY_KEY] = CANARY.get()
        await self.app(scope, receive, send)


def work_before_the_body() -> None:
    """``/first`` until its body is read (the user is set by each app's own means)."""
    sentry_sdk.set_tag("early", FIRST_TAGS["early"])
    add_breadcrumb(FIRST_CRUMBS[0])
    CANARY.set(CANARY_SET)


def work_after_the_body() -> None:
    set_user(FIRST_USER)
    sentry_sdk.set_tag("t", FIRST_TAGS["t"])
    set_business_context(podcast_id=FIRST_BUSINESS["podcast_id"])
    add_breadcrumb(FIRST_CRUMBS[1])


def fail(scope: Scope, run: str) -> NoReturn:
    """What ``/second`` (and ``/ws``) does: its own context, then an exception whose
    message says which run this is, the request ID the app was given and the canaries."""
    set_business_context(**SECOND_BUSINESS)
    add_breadcrumb(f"{scope['path']}: about to fail")
    raise RuntimeError(
        f"{scope['path']} failed: run={run} request_id={get_request_id()} "
        f"canary_at_entry={scope.get(ENTRY_KEY)} canary_in_app={CANARY.get()}"
    )


# --- the raw ASGI app -------------------------------------------------------------------


def bearer_user(scope: Scope) -> dict[str, str] | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            user = TOKENS.get(value.decode("latin-1").removeprefix("Bearer "))
            return None if user is None else {"id": user}
    return None


async def raw_endpoints(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    run = dict(_query(scope)).get("run", "")
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        fail(scope, run)
    if scope["path"] == "/second":
        fail(scope, run)
    if scope["path"] != "/first":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    with business_context(block=FIRST_BUSINESS["block"]):
        set_user(FIRST_USER)
        work_before_the_body()
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        work_after_the_body()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def _query(scope: Scope) -> list[tuple[str, str]]:
    pairs = scope["query_string"].decode("latin-1").split("&")
    return [(key, value) for key, _, value in (pair.partition("=") for pair in pairs)]


def raw_app() -> CanaryAtEntry:
    """Built after ``init_sentry(dsn=...)``: the raw app in the middleware."""
    return CanaryAtEntry(SentryContextMiddleware(raw_endpoints, user_extractor=bearer_user))


# --- the FastAPI app, set up as docs/fastapi.md shows -----------------------------------


class User(BaseModel):
    id: str
    email: str


USERS = {token: User(id=user, email=f"{user}@example.com") for token, user in TOKENS.items()}
bearer = HTTPBearer(auto_error=False)


async def get_current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User | None:
    if credentials is None:
        return None  # anonymous
    user = USERS.get(credentials.credentials)
    if user is None:
        raise HTTPException(401, "invalid token")
    return user


CurrentUser = Annotated[User | None, Depends(bind_user(get_current_user))]


def fastapi_app() -> CanaryAtEntry:
    """Built after ``init_sentry()`` (the SDK's Starlette and FastAPI integrations on)."""
    app = FastAPI()

    @app.post("/first")
    async def first(request: Request, user: CurrentUser) -> int:
        with business_context(block=FIRST_BUSINESS["block"]):
            work_before_the_body()
            size = len(await request.body())
            work_after_the_body()
        return size

    @app.get("/second")
    async def second(request: Request, run: str, user: CurrentUser) -> None:
        fail(request.scope, run)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, run: str) -> None:
        await websocket.accept()
        fail(websocket.scope, run)

    return CanaryAtEntry(install(app))


def sentry_environment(dsn: str) -> dict[str, str]:
    """What both apps' ``init_sentry`` reads: the documented defaults, sending to ``dsn``."""
    return {
        "SENTRY_DSN": dsn,
        "SENTRY_ENVIRONMENT": "production",
        "SENTRY_TRACES_SAMPLE_RATE": "0.1",
        "SENTRY_PROFILES_SAMPLE_RATE": "0.0",
        "ASGI_SENTRY_CTX_STORE": "",
    }


def build_app(kind: str) -> CanaryAtEntry:
    """Initialise Sentry from the environment and build app ``kind``, as a service starts."""
    if kind == "raw-asgi":
        assert init_sentry(dsn=os.environ["SENTRY_DSN"])
        return raw_app()
    assert init_sentry()  # the documented FastAPI set-up: everything from the environment
    return fastapi_app()


def granian_raw_app() -> CanaryAtEntry:
    """Granian's factory (called in its worker process) for the raw app."""
    return build_app("raw-asgi")


def granian_fastapi_app() -> CanaryAtEntry:
    return build_app("fastapi")


GRANIAN_TARGETS = {
    "raw-asgi": f"{__name__}:granian_raw_app",
    "fastapi": f"{__name__}:granian_fastapi_app",
}


# --- a raw HTTP/1.1 client --------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names lowercased; a repeated header keeps its last value
    body: bytes


def http_request(
    method: str, target: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method == "POST":
        lines += ["Content-Type: application/octet-stream", f"Content-Length: {len(body)}"]
    return "\r\n".join([*lines, "", ""]).encode("latin-1") + body


def read_reply(reader: BufferedReader, *, head_only: bool = False) -> Reply:
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection without answering")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return Reply(status, headers, b"")
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int(reader.readline().split(b";")[0], 16):
            body += reader.read(size)
            reader.readline()
        reader.readline()
    else:
        body = reader.read()
    return Reply(status, headers, body)


def websocket_upgrade(target: str) -> bytes:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return http_request(
        "GET",
        target,
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        },
    )


# --- the exchanges ----------------------------------------------------------------------


@dataclass
class Served:
    app: str
    server: str
    url: str
    ingest: SentryIngest

    def connect(self) -> socket.socket:
        parts = urlsplit(self.url)
        assert parts.port is not None
        return socket.create_connection((parts.hostname, parts.port), timeout=10)


@dataclass
class Outcome:
    """What the test saw of one exchange, and the events of its failing request."""

    first: Reply
    last: Reply
    events: list[dict[str, Any]]

    @property
    def first_request_id(self) -> str:
        return self.first.headers["x-request-id"]

    @property
    def report(self) -> dict[str, str]:
        """What the failing request's app wrote in its exception's message."""
        return dict(re.findall(r"(\w+)=(\S+)", exception_message(self.events[0])))


def exception_message(event: dict[str, Any]) -> str:
    return " ".join(str(value.get("value")) for value in event["exception"]["values"])


def events_of_run(ingest: SentryIngest, run: str) -> list[dict[str, Any]]:
    """Wait for the events whose exception names ``run``; return them all."""

    def matching() -> list[dict[str, Any]]:
        return [
            event
            for event in ingest.events
            if "exception" in event and f"run={run} " in exception_message(event)
        ]

    ingest.wait_for(lambda _: bool(matching()))
    return matching()


def first_request(body_size: int) -> bytes:
    return http_request(
        "POST", "/first", body=b"x" * body_size, headers={"Authorization": "Bearer token-1"}
    )


def two_requests(served: Served, *, body_size: int, delivery: str) -> Outcome:
    """``POST /first`` then ``GET /second`` on one connection, delivered as ``delivery``."""
    run = secrets.token_hex(8)
    second = http_request("GET", f"/second?run={run}")
    with served.connect() as sock, sock.makefile("rb") as reader:
        if delivery == "pipelined":
            sock.sendall(first_request(body_size) + second)
            first = read_reply(reader)
        else:
            sock.sendall(first_request(body_size))
            first = read_reply(reader)
            sock.sendall(second)
        last = read_reply(reader)
    assert first.status == 200, first
    assert first.body == str(body_size).encode()
    return Outcome(first, last, events_of_run(served.ingest, run))


def upload_then_websocket(served: Served, *, connection: str) -> Outcome:
    """A 200 kB upload, then a websocket opened on the same connection or a new one."""
    run = secrets.token_hex(8)
    upgrade = websocket_upgrade(f"/ws?run={run}")
    with served.connect() as sock, sock.makefile("rb") as reader:
        sock.sendall(first_request(BODY_SIZES["200kB"]))
        first = read_reply(reader)
        assert first.status == 200, first
        if connection == "same-connection":
            sock.sendall(upgrade)
            handshake = read_reply(reader, head_only=True)
        else:
            with served.connect() as other, other.makefile("rb") as other_reader:
                other.sendall(upgrade)
                handshake = read_reply(other_reader, head_only=True)
    assert handshake.status == 101, handshake
    return Outcome(first, handshake, events_of_run(served.ingest, run))


# --- the servers: one per (app, server), one ingest for the module ----------------------


@pytest.fixture(scope="module")
def module_ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture(
    scope="module",
    params=[(app, server) for app in APPS for server in SERVERS],
    ids=lambda param: f"{param[0]}-on-{param[1]}",
)
def served(request: pytest.FixtureRequest, module_ingest: SentryIngest) -> Iterator[Served]:
    app, server = request.param
    environment = sentry_environment(module_ingest.dsn)
    if server == "granian":
        with serve(GRANIAN_TARGETS[app], server="granian", env=environment, factory=True) as url:
            yield Served(app, server, url, module_ingest)
        return
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        try:
            with serve(build_app(app), server=server) as url:
                yield Served(app, server, url, module_ingest)
        finally:
            reset_sdk()


# --- what the servers do: measured ------------------------------------------------------

# The cases where the server starts the next request (or websocket) in a copy of
# the previous request's context, as the canary at the server's entry shows.
# Measured with 20 runs of every case on one server, for both apps, with the
# same answer every time: the causes are structural, not timing.
# - uvicorn on asyncio: a 200 kB body pauses reading (its buffer passes 64 kB)
#   and the app's ``receive`` resumes it, re-registering the socket reader with
#   its context; the next request, or a websocket upgrade, on that connection
#   starts in a copy of that (python/cpython#140947). 10 B never pause reading.
# - uvicorn, any loop: a pipelined request is started by the previous request's
#   last ``send`` (``on_response_complete``), in a copy of its task's context
#   (uvicorn#3158). uvloop's reader keeps no context: keep-alive is clean there.
# - hypercorn reads in the connection's task and starts each request from it;
#   granian starts requests from Rust: neither hands anything over.
# - A websocket on a new connection never inherits anything, on any server.
HANDS_OVER: dict[str, frozenset[str]] = {
    "uvicorn-asyncio-h11": frozenset(
        {"10B-pipelined", "200kB-keep-alive", "200kB-pipelined", "websocket-same-connection"}
    ),
    "uvicorn-asyncio-httptools": frozenset(
        {"10B-pipelined", "200kB-keep-alive", "200kB-pipelined", "websocket-same-connection"}
    ),
    "uvicorn-uvloop-httptools": frozenset({"10B-pipelined", "200kB-pipelined"}),
    "hypercorn": frozenset(),
    "granian": frozenset(),
}


def canary_expected(server: str, case: str) -> str:
    return CANARY_SET if case in HANDS_OVER[server] else "unset"


def context_of(event: dict[str, Any]) -> dict[str, Any]:
    """The request context an event carries, in the terms the tests compare."""
    request = event.get("request") or {}
    return {
        "user": event.get("user"),
        "tags": event.get("tags"),
        "business": (event.get("contexts") or {}).get("business"),
        "breadcrumbs": [
            crumb.get("message") for crumb in (event.get("breadcrumbs") or {}).get("values", [])
        ],
        "request": (request.get("method"), urlsplit(request.get("url", "")).path),
        # A route name, from the SDK's FastAPI integration; the raw app has none.
        "transaction": event.get("transaction"),
    }


def own_context(served: Served, outcome: Outcome, path: str) -> dict[str, Any]:
    """What the event of the anonymous request to ``path`` must carry: its own, only."""
    request_id = outcome.report["request_id"]
    request: tuple[str | None, str]
    if path == "/ws":
        crumbs = ["WEBSOCKET /ws", "WEBSOCKET /ws -> 101", "/ws: about to fail"]
        request = (None, "/ws")
    else:
        crumbs = ["GET /second", "/second: about to fail"]
        if served.app == "fastapi":  # Starlette answers the 500 before the exception escapes
            crumbs.append("GET /second -> 500")
        request = ("GET", "/second")
    return {
        "user": None,
        "tags": {"request_id": request_id, **SECOND_BUSINESS},
        "business": SECOND_BUSINESS,
        "breadcrumbs": crumbs,
        "request": request,
        # Its own route or path, whoever named it (the SDK's FastAPI integration, or us).
        "transaction": path,
    }


def assert_only_its_own_context(served: Served, outcome: Outcome, path: str) -> None:
    request_id = outcome.report["request_id"]
    assert request_id != outcome.first_request_id
    # The raw app's 500 comes from the server (no header); granian's 101 has none either.
    assert outcome.last.headers.get("x-request-id", request_id) == request_id
    for event in outcome.events:
        assert context_of(event) == own_context(served, outcome, path)
        assert outcome.first_request_id not in json.dumps(event)


# --- the tests --------------------------------------------------------------------------

body_sizes = pytest.mark.parametrize("body", BODY_SIZES)
deliveries = pytest.mark.parametrize("delivery", DELIVERIES)
connections = pytest.mark.parametrize("connection", ["same-connection", "new-connection"])


@deliveries
@body_sizes
def test_the_next_requests_event_carries_its_own_context_and_nothing_of_the_previous_one(
    served: Served, body: str, delivery: str
) -> None:
    outcome = two_requests(served, body_size=BODY_SIZES[body], delivery=delivery)
    assert_only_its_own_context(served, outcome, "/second")


@deliveries
@body_sizes
def test_the_server_hands_over_the_previous_requests_context_exactly_where_expected(
    served: Served, body: str, delivery: str
) -> None:
    outcome = two_requests(served, body_size=BODY_SIZES[body], delivery=delivery)
    expected = canary_expected(served.server, f"{body}-{delivery}")
    assert outcome.report["canary_at_entry"] == expected


@connections
def test_a_websocket_opened_after_an_upload_carries_nothing_of_the_upload(
    served: Served, connection: str
) -> None:
    outcome = upload_then_websocket(served, connection=connection)
    assert_only_its_own_context(served, outcome, "/ws")


@connections
def test_a_websocket_inherits_the_uploads_context_exactly_where_expected(
    served: Served, connection: str
) -> None:
    outcome = upload_then_websocket(served, connection=connection)
    expected = canary_expected(served.server, f"websocket-{connection}")
    assert outcome.report["canary_at_entry"] == expected
