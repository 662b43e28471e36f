"""The installed wheel, used as a user would: run by .ci/release_check in a fresh venv.

``python release_smoke.py core``: the wheel alone (no framework, no httpx, no
pytest). A raw ASGI app wrapped in ``SentryContextMiddleware`` fails one
request; ``init_sentry(store=...)`` without a DSN keeps the event in the local
store, and ``python -m asgi_sentry_ctx events list`` must show it.

``python release_smoke.py starlette|fastapi|litestar|quart``: the wheel with
that extra. The framework's own app, set up through its adapter, fails one
request; the response carries the request ID and the event is in the store.

``python release_smoke.py structlog``: the core's structlog processor puts the
request ID on a structlog event dict inside a request.

Only the standard library and the package's own dependencies are used, and the
requests are driven over raw ASGI, so nothing here installs anything the wheel
does not bring. Run from outside the source tree, so that the import can only
find the installed package.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]  # (scope, receive, send); frameworks type them their way

FRAMEWORKS = ("starlette", "fastapi", "litestar", "quart")
# What the wheel alone must not bring: the extras, the dev tools.
NOT_IN_CORE = (*FRAMEWORKS, "quart-auth", "structlog", "httpx", "pytest")
ERROR = "release smoke: storage backend unavailable"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("core", "structlog", *FRAMEWORKS):
        print(f"usage: release_smoke.py core|structlog|{'|'.join(FRAMEWORKS)}", file=sys.stderr)
        return 2
    for name in list(os.environ):  # a DSN or a store from the caller's environment
        if name.startswith(("SENTRY_", "ASGI_SENTRY_CTX_")):
            del os.environ[name]
    package = check_installed_package()
    what = argv[0]
    if what == "core":
        missing = [d for d in NOT_IN_CORE if _installed(d)]
        assert not missing, f"the wheel alone brought {missing}"
        print(f"core: {package}; no framework installed")
        failing_request("core", "/api/podcasts/123/upload", "req-core-1")
    elif what == "structlog":
        structlog_processor()
    else:
        adapter = importlib.import_module(f"asgi_sentry_ctx.adapters.{what}").__name__
        print(f"{what} {importlib.metadata.version(what)}: {adapter} imported")
        failing_request(what, "/boom", f"req-{what}-1")
    return 0


def check_installed_package() -> str:
    """The package imported is the wheel's, in this venv, at the version the metadata says."""
    import asgi_sentry_ctx

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    location = Path(asgi_sentry_ctx.__file__).resolve()
    assert location.is_relative_to(site), f"imported {location}, not from {site}"
    version = importlib.metadata.version("asgi-sentry-ctx")
    assert asgi_sentry_ctx.__version__ == version, (asgi_sentry_ctx.__version__, version)
    direct_url = importlib.metadata.distribution("asgi-sentry-ctx").read_text("direct_url.json")
    assert direct_url is None or '"editable": true' not in direct_url, "an editable install"
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "asgi_sentry_ctx.pytest_plugin" for ep in plugins), "no pytest11 plugin"
    return f"asgi-sentry-ctx {version} from {location.parent}"


def failing_request(what: str, path: str, request_id: str) -> None:
    from asgi_sentry_ctx import init_sentry

    store = Path(tempfile.mkdtemp(prefix=f"release-smoke-{what}-")) / "events.db"
    assert init_sentry(store=store), "init_sentry(store=...) without a DSN: Sentry should be on"
    app = build_app(what)
    status, headers = asyncio.run(serve_one(app, path, request_id, lifespan=what != "core"))
    if what == "core":  # the exception reached the server, which answers 500 itself
        assert status is None, f"core: a raw app that raised, yet status {status}"
    else:
        assert status == 500, f"{what}: status {status}"
        assert headers.get("x-request-id") == request_id, f"{what}: response headers {headers}"

    import sentry_sdk

    sentry_sdk.flush(timeout=5)
    listing = events_cli("list", store)
    lines = listing.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected one event, `events list` printed:\n{listing}"
    for expected in (f"req={request_id}", "[local]", f"RuntimeError: {ERROR}"):
        assert expected in lines[0], f"{what}: {expected!r} not in `events list`:\n{listing}"
    [event] = json.loads(events_cli("list", store, "--json"))
    assert event["request_id"] == request_id, event
    assert event["request"]["method"] == "GET", event
    assert event["request"]["url"].endswith(path), event
    if what == "core":
        assert event["user"] == {"id": "user-123"}, event
        assert event["business"] == {"podcast_id": "123", "action": "upload"}, event
    answer = "raised to the server" if what == "core" else f"500 with X-Request-ID {request_id}"
    print(f"{what}: {answer}; `events list`: {lines[0]}")


def events_cli(command: str, store: Path, *more: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "asgi_sentry_ctx", "events", command, "--store", str(store), *more],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"events {command}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


def build_app(what: str) -> ASGIApp:
    """An app whose one route raises RuntimeError(ERROR), set up as the docs say."""
    if what == "core":
        from asgi_sentry_ctx import SentryContextMiddleware, set_business_context, set_user

        async def upload(scope: Any, receive: Any, send: Any) -> None:
            set_user("user-123")
            set_business_context(podcast_id="123", action="upload")
            raise RuntimeError(ERROR)

        return SentryContextMiddleware(upload)
    builder: Callable[[], ASGIApp] = globals()[f"_{what}_app"]
    return builder()


def _starlette_app() -> ASGIApp:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from asgi_sentry_ctx.adapters.starlette import install

    async def boom(request: Any) -> Any:
        raise RuntimeError(ERROR)

    app: ASGIApp = install(Starlette(routes=[Route("/boom", boom)]))
    return app


def _fastapi_app() -> ASGIApp:
    from fastapi import FastAPI

    from asgi_sentry_ctx.adapters.fastapi import install

    api = FastAPI()

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError(ERROR)

    app: ASGIApp = install(api)
    return app


def _litestar_app() -> ASGIApp:
    from litestar import Litestar, get

    from asgi_sentry_ctx.adapters.litestar import SentryContextPlugin

    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError(ERROR)

    app: ASGIApp = Litestar(route_handlers=[boom], plugins=[SentryContextPlugin()])
    return app


def _quart_app() -> ASGIApp:
    from quart import Quart

    from asgi_sentry_ctx.adapters.quart import init_app

    quart = Quart(__name__)

    @quart.route("/boom")
    async def boom() -> str:
        raise RuntimeError(ERROR)

    init_app(quart)
    app: ASGIApp = quart
    return app


async def serve_one(
    app: ASGIApp, path: str, request_id: str, *, lifespan: bool
) -> tuple[int | None, dict[str, str]]:
    """What a server does for one GET: lifespan start-up, the request, shut-down."""
    if lifespan:
        startup, shutdown = await _lifespan(app)
        await startup
    sent: list[Message] = []
    body_read = False
    raised = False

    async def receive() -> Message:
        nonlocal body_read
        if not body_read:
            body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"smoke.test"), (b"x-request-id", request_id.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("smoke.test", 80),
        "state": {},
    }
    try:
        await app(scope, receive, send)
    except RuntimeError as exc:  # re-raised to the server, which answers 500 if nobody did
        if str(exc) != ERROR:
            raise
        raised = True
    if lifespan:
        await shutdown()
    starts = [m for m in sent if m["type"] == "http.response.start"]
    if not starts:
        assert raised, f"no response, and nothing raised: {sent}"
        return None, {}
    [start] = starts
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], headers


async def _lifespan(app: ASGIApp) -> tuple[Awaitable[None], Callable[[], Awaitable[None]]]:
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": {}}

    async def run() -> None:
        await app(scope, inbox.get, outbox.put)

    task = asyncio.create_task(run())

    async def expect(kind: str) -> None:
        message = await asyncio.wait_for(outbox.get(), timeout=30)
        assert message["type"] == kind, f"lifespan: {message}, expected {kind}"

    async def startup() -> None:
        await inbox.put({"type": "lifespan.startup"})
        await expect("lifespan.startup.complete")

    async def shutdown() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await expect("lifespan.shutdown.complete")
        await asyncio.wait_for(task, timeout=30)

    return startup(), shutdown


def structlog_processor() -> None:
    import structlog

    from asgi_sentry_ctx import SentryContextMiddleware, add_request_context

    structlog.configure(
        processors=[add_request_context, structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    logged: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        logged.append(json.loads(structlog.get_logger().info("inside a request")))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status, headers = asyncio.run(
        serve_one(SentryContextMiddleware(app), "/", "req-structlog-1", lifespan=False)
    )
    assert status == 204, status
    assert headers.get("x-request-id") == "req-structlog-1", headers
    assert [entry.get("request_id") for entry in logged] == ["req-structlog-1"], logged
    outside = json.loads(structlog.get_logger().info("outside"))
    assert "request_id" not in outside, outside
    print(
        f"structlog {importlib.metadata.version('structlog')}: add_request_context put"
        " request_id=req-structlog-1 on the event dict inside the request, none outside"
    )


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
