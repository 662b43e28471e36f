"""A loopback Sentry ingest: see events exactly as Sentry would receive them.

For tests and demos. Point the SDK at
[`SentryIngest.dsn`][asgi_sentry_ctx.testing.SentryIngest.dsn] and the SDK's
real HTTP transport posts its envelopes here, compressed as usual::

    with SentryIngest() as ingest:
        sentry_sdk.init(dsn=ingest.dsn)
        ...
        [event] = ingest.wait_for_events(1)

It listens on 127.0.0.1 only, and reads envelopes with sentry-sdk's own parser.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from sentry_sdk.envelope import Envelope as SdkEnvelope

__all__ = ["Envelope", "SentryIngest", "parse_envelope"]


class Envelope:
    """One envelope: its header and its items as ``(item header, payload)`` pairs."""

    def __init__(self, header: dict[str, Any], items: list[tuple[dict[str, Any], Any]]) -> None:
        self.header = header
        self.items = items

    def payloads(self, kind: str) -> list[Any]:
        """The payloads of the items of type ``kind`` (``"event"``, ``"transaction"``...)."""
        return [payload for item, payload in self.items if item.get("type") == kind]


def parse_envelope(body: bytes) -> Envelope:
    """Parse an uncompressed envelope body with sentry-sdk's own parser.

    JSON payloads (events, transactions, items whose content type is
    ``application/json``, the default, and containers of logs or spans, whose
    content type ends in ``+json``) are decoded; others stay bytes.
    """
    parsed = SdkEnvelope.deserialize(body)
    items: list[tuple[dict[str, Any], Any]] = []
    for item in parsed.items:
        payload = item.payload
        value: Any = payload.json
        if value is None:
            value = payload.bytes
            content_type = item.headers.get("content_type", "application/json")
            if value and (content_type == "application/json" or content_type.endswith("+json")):
                value = json.loads(value)
        items.append((dict(item.headers), value))
    return Envelope(dict(parsed.headers), items)


class SentryIngest:
    """A tiny Sentry ingest server on 127.0.0.1 that records what it receives.

    ``status`` (default 200), ``headers``, ``body`` and ``delay`` (seconds) set how it
    answers, so tests can play an ingest that is failing, rate-limiting or slow
    (a long ``delay`` is a hanging ingest; ``stop()`` cuts it short).
    [`down`][asgi_sentry_ctx.testing.SentryIngest.down] and
    [`up`][asgi_sentry_ctx.testing.SentryIngest.up] play an ingest that is
    unreachable (connection refused) for a while. ``requests`` counts every
    POST, answered or refused.
    """

    def __init__(self, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = dict(headers or {})
        self.delay = 0.0
        self.body = b"{}"
        self.envelopes: list[Envelope] = []
        self.requests = 0
        self._event_count = 0
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._server = self._bind(0)
        self._port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def _bind(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        server.daemon_threads = True
        return server

    @property
    def port(self) -> int:
        """The port it listens on (chosen free by the OS, kept across down/up)."""
        return self._port

    @property
    def dsn(self) -> str:
        """A DSN that sends to this ingest (project 1)."""
        return f"http://public@127.0.0.1:{self.port}/1"

    def start(self) -> SentryIngest:
        """Start serving in a background thread; return the ingest itself."""
        # A short poll interval: ``stop()`` waits up to one interval for the loop.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="sentry-ingest",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopped.set()  # a delayed (hanging) answer ends now
        self._halt()

    def _halt(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def down(self) -> None:
        """Stop listening, for a while.

        Connections are refused until [`up`][asgi_sentry_ctx.testing.SentryIngest.up].
        """
        self._halt()

    def up(self) -> None:
        """Listen again, on the same port.

        Ends what [`down`][asgi_sentry_ctx.testing.SentryIngest.down] started.
        """
        self._server = self._bind(self._port)
        self.start()

    def __enter__(self) -> SentryIngest:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every error/message event received so far, in arrival order."""
        with self._changed:
            return [event for env in self.envelopes for event in env.payloads("event")]

    def clear(self) -> None:
        """Forget what was received so far."""
        with self._changed:
            self.envelopes.clear()
            self._event_count = 0

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events arrived; return all of them.

        Raises ``TimeoutError`` naming how many arrived, so a test never waits by sleeping.
        """
        with self._changed:
            # A running count, so that waiting for 10,000 events costs no 10,000 list builds.
            self._wait_until(lambda: self._event_count >= count, timeout)
            events = [event for env in self.envelopes for event in env.payloads("event")]
        if len(events) < count:
            raise TimeoutError(f"expected {count} events, received {len(events)}")
        return events

    def wait_for_items(self, kind: str, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait until at least ``count`` items of type ``kind`` (``"transaction"``...) arrived."""
        self.wait_for(
            lambda ingest: sum(len(env.payloads(kind)) for env in ingest.envelopes) >= count,
            timeout,
        )
        return [item for env in self.envelopes for item in env.payloads(kind)]

    def wait_for(self, predicate: Callable[[SentryIngest], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (checked at each request), else ``TimeoutError``."""
        with self._changed:
            if not self._wait_until(lambda: predicate(self), timeout):
                raise TimeoutError(f"condition not met after {self.requests} requests")

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> int:
        """Wait until at least ``count`` POSTs arrived (answered with any status)."""
        with self._changed:
            if not self._wait_until(lambda: self.requests >= count, timeout):
                raise TimeoutError(f"expected {count} requests, received {self.requests}")
            return self.requests

    def _wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` holds, checked at each request; whether it did in ``timeout``.

        The caller holds ``self._changed``: what it reads after the wait is what was checked.
        """
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(remaining)
        return True

    def _count_request(self) -> None:
        with self._changed:
            self.requests += 1
            self._changed.notify_all()

    def _record(self, envelope: Envelope) -> None:
        with self._changed:
            self.envelopes.append(envelope)
            self._event_count += len(envelope.payloads("event"))
            self._changed.notify_all()


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only when the SDK found it too

        return bytes(brotli.decompress(body))
    return body


def _handler_for(ingest: SentryIngest) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ingest._count_request()
            if ingest.delay:
                ingest._stopped.wait(ingest.delay)
            status = ingest.status
            if 200 <= status < 300:
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                ingest._record(parse_envelope(_decompress(body, encoding)))
            self.send_response(status)
            for name, value in ingest.headers.items():
                self.send_header(name, value)
            answer = ingest.body
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test and demo output clean

    return Handler
