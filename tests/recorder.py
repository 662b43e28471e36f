"""A loopback HTTP server that records the headers of every request it receives.

``with recording_server() as server:`` serves it under uvicorn on 127.0.0.1;
``server.url``, ``server.host_port`` ("127.0.0.1:PORT", a propagation target),
and ``server.received``: one dict of lowercased header names to values per
request, in order. ``GET /redirect?to=URL`` answers ``307`` to ``URL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

from tests.asgi import lifespan
from tests.servers import serve


class Recorder:
    """The app, and what it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.url = ""

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        self.received.append(
            {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        )
        if scope["path"] == "/redirect":
            [to] = parse_qs(scope["query_string"].decode())["to"]
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [(b"location", to.encode())],
                }
            )
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def recording_server() -> Iterator[Recorder]:
    recorder = Recorder()
    with serve(recorder) as url:
        recorder.url = url
        yield recorder
