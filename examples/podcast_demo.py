"""The demo: a podcast-upload backend whose failing upload reaches Sentry with full context.

``make demo`` runs it. No Sentry account is needed: events go to the embedded
default, the local event store (the envelopes exactly as the SDK would send
them), and are read back with the ``python -m asgi_sentry_ctx events`` CLI.
With ``SENTRY_DSN`` set they are forwarded to your Sentry project as well.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import threading
import time
from contextlib import closing
from typing import Any

import httpx
import sentry_sdk
import uvicorn
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_sentry_ctx import (
    EventStore,
    add_breadcrumb,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.adapters.starlette import install
from asgi_sentry_ctx.store import cli

TOKENS = {"token-123": ("user-123", "ana@example.com")}


class User(BaseUser):
    def __init__(self, user_id: str, email: str) -> None:
        self.id = user_id
        self.email = email

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.email


class BearerTokens(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in TOKENS:
            return None
        return AuthCredentials(["authenticated"]), User(*TOKENS[token])


class StorageError(Exception):
    pass


async def upload(request: Request) -> JSONResponse:
    podcast_id = request.path_params["podcast_id"]
    set_business_context(podcast_id=podcast_id, action="upload")
    add_breadcrumb("validated upload", category="upload", data={"filename": "ep42.mp3"})
    add_breadcrumb("sending to storage", category="storage", data={"bucket": "episodes"})
    raise StorageError("GCS upload failed: 503 from storage backend")


async def episode(request: Request) -> JSONResponse:
    if request.path_params["episode_id"] != "42":
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse({"id": "42", "title": "Pilot"})


app = Starlette(
    routes=[
        Route("/api/podcasts/{podcast_id}/upload", upload, methods=["POST"]),
        Route("/api/episodes/{episode_id}", episode),
    ],
    middleware=[Middleware(AuthenticationMiddleware, backend=BearerTokens())],
)
# Outermost, even outside Starlette's error handling, so its 500s carry the
# request ID; the user comes from scope["user"], resolved only if an event is built.
install(app)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        # The embedded default: the local event store. With SENTRY_DSN set the
        # events are also forwarded to your Sentry project.
        store = os.environ.get("ASGI_SENTRY_CTX_STORE") or os.path.join(workdir, "events.db")
        if not init_sentry(store=store, environment="demo", traces_sample_rate=0.0):
            return 1
        with _serve(app) as base_url, httpx.Client(base_url=base_url) as client:
            auth = {"Authorization": "Bearer token-123"}
            steps = [
                client.get("/api/episodes/42", headers=auth),
                client.get("/api/episodes/999", headers=auth),  # a 404: noise, not reported
                client.post(
                    "/api/podcasts/123/upload",
                    headers={**auth, "X-Request-ID": "req-abc-def"},
                ),
            ]
        sentry_sdk.flush(5)
        for response in steps:
            request = response.request
            print(
                f"{request.method} {request.url.path} -> {response.status_code} "
                f"(X-Request-ID: {response.headers.get('x-request-id')})"
            )
        print(f"\n$ python -m asgi_sentry_ctx events list --store {store}")
        cli.main(["events", "list", "--store", store])
        with closing(EventStore.open_existing(store)) as events:
            event_ids = [stored.event_id for stored in events.envelopes(limit=1)]
        if not event_ids or event_ids[0] is None:
            print("no event was captured")
            return 1
        event_id = event_ids[0]
        print(f"\n$ python -m asgi_sentry_ctx events show {event_id[:8]} --store {store}")
        status = cli.main(["events", "show", event_id, "--store", store])
        sentry_sdk.get_client().close()
    return status


class _serve:
    """uvicorn on a free loopback port, in a background thread."""

    def __init__(self, asgi_app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        # The app's traceback is in the event below; the server need not print it too.
        config = uvicorn.Config(asgi_app, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


if __name__ == "__main__":
    sys.exit(main())
