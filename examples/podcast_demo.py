"""The demo: a podcast-upload backend whose failing upload reaches Sentry with full context.

``make demo`` runs it. No Sentry account is needed: by default events go to an
embedded loopback ingest that receives them exactly as Sentry would (the real
SDK and its real HTTP transport) and they are printed here. With
``SENTRY_DSN`` set, they go to your Sentry project instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
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
    SentryContextMiddleware,
    add_breadcrumb,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.testing import SentryIngest

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
# Outermost: the request ID reaches even the 500 that Starlette's error handling produces.
wrapped = SentryContextMiddleware(app, user_extractor=lambda scope: scope.get("user"))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with SentryIngest() as ingest:
        dsn = os.environ.get("SENTRY_DSN") or ingest.dsn
        if not init_sentry(dsn, environment="demo", traces_sample_rate=0.0, send_default_pii=True):
            return 1
        with _serve(wrapped) as base_url, httpx.Client(base_url=base_url) as client:
            auth = {"Authorization": "Bearer token-123"}
            steps = [
                client.get("/api/episodes/42", headers=auth),
                client.get("/api/episodes/999", headers=auth),  # a 404: noise, not reported
                client.post(
                    "/api/podcasts/123/upload",
                    headers={**auth, "X-Request-ID": "req-abc-def"},
                ),
            ]
        for response in steps:
            request = response.request
            print(
                f"{request.method} {request.url.path} -> {response.status_code} "
                f"(X-Request-ID: {response.headers.get('x-request-id')})"
            )
        sentry_sdk.flush(5)
        if dsn != ingest.dsn:
            print(f"Events were sent to {dsn.split('@')[-1]}.")
            return 0
        events = ingest.wait_for_events(1)
        sentry_sdk.get_client().close()
        print(f"\nSentry received {len(events)} event(s):\n")
        for event in events:
            print(_describe(event))
    return 0


def _describe(event: dict[str, Any]) -> str:
    exception = (event.get("exception") or {}).get("values") or [{}]
    summary = {
        "exception": f"{exception[-1].get('type')}: {exception[-1].get('value')}",
        "tags": {k: v for k, v in event.get("tags", {}).items()},
        "user": event.get("user"),
        "contexts.business": event.get("contexts", {}).get("business"),
        "request": {k: event.get("request", {}).get(k) for k in ("method", "url", "headers")},
        "breadcrumbs": [
            f"[{c.get('category')}] {c.get('message')}"
            for c in event.get("breadcrumbs", {}).get("values", [])
        ],
    }
    return json.dumps(summary, indent=2)


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
