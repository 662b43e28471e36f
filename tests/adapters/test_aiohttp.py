"""aiohttp: the request ID and named business fields go to allowed hosts only, per
session (a ``TraceConfig``) and process-wide (``install``).

Each test makes real calls to a real loopback server that records what it
received, from inside a request served by the real middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest

from asgi_sentry_ctx import OutboundPropagation, SentryContextMiddleware, set_business_context
from asgi_sentry_ctx.adapters import aiohttp as aiohttp_adapter
from tests.asgi import ok, request
from tests.recorder import Recorder, recording_server

RID = "req-aiohttp-1"


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    with recording_server() as recorder:
        yield recorder


@pytest.fixture
def received(server: Recorder) -> list[dict[str, str]]:
    server.received.clear()
    return server.received


@pytest.fixture
def restore_aiohttp() -> Iterator[None]:
    """Whatever a test installs is uninstalled after it."""
    yield
    aiohttp_adapter.uninstall()


async def in_request(work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work()`` inside a request served by the middleware, whose ID is ``RID``."""

    async def app(scope: object, receive: object, send: object) -> None:
        await work()
        await ok(scope, receive, send)

    await request(SentryContextMiddleware(app), headers=[(b"x-request-id", RID.encode())])


def traced_session(outbound: OutboundPropagation) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trace_configs=[aiohttp_adapter.trace_config(outbound)])


async def get(session: aiohttp.ClientSession, url: str, **options: object) -> None:
    async with session.get(url, **options) as response:  # type: ignore[arg-type]
        await response.read()


class TestPerSession:
    async def test_a_session_sends_the_request_id_to_an_allowed_host(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A session with the trace config adds the request's ID."""
        async with traced_session(OutboundPropagation([server.host_port])) as session:
            await in_request(lambda: get(session, server.url))
        assert received[0]["x-request-id"] == RID

    async def test_outside_any_request_nothing_is_sent(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A call made outside any request gets no request ID."""
        async with traced_session(OutboundPropagation([server.host_port])) as session:
            await get(session, server.url)
        assert "x-request-id" not in received[0]

    async def test_a_host_outside_the_targets_gets_nothing(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A host not named gets no request ID."""
        async with traced_session(OutboundPropagation(["billing.internal"])) as session:
            await in_request(lambda: get(session, server.url))
        assert "x-request-id" not in received[0]

    async def test_a_header_the_app_set_is_not_overwritten(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """The app's own request-ID header on the outgoing request wins."""
        async with traced_session(OutboundPropagation([server.host_port])) as session:
            await in_request(lambda: get(session, server.url, headers={"X-Request-ID": "mine"}))
        assert received[0]["x-request-id"] == "mine"

    async def test_a_business_value_that_is_not_header_safe_is_skipped(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A CRLF-carrying field is left out; a safe one goes under its header."""
        outbound = OutboundPropagation(
            [server.host_port], business_headers={"bad": "X-Bad", "episode_id": "X-Episode-ID"}
        )

        async def work() -> None:
            set_business_context(bad="x\r\nX-Injected: 1", episode_id="ep-9")
            await get(session, server.url)

        async with traced_session(outbound) as session:
            await in_request(work)
        assert "x-bad" not in received[0]
        assert "x-injected" not in received[0]
        assert received[0]["x-episode-id"] == "ep-9"

    async def test_a_redirect_to_a_host_outside_the_targets_drops_the_headers(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """aiohttp follows redirects by default: the next hop, not named, gets nothing."""
        elsewhere = server.url.replace("127.0.0.1", "localhost")
        async with traced_session(OutboundPropagation(["127.0.0.1"])) as session:
            await in_request(lambda: get(session, f"{server.url}/redirect?to={elsewhere}"))
        first, second = received
        assert first["x-request-id"] == RID
        assert second["host"].startswith("localhost")
        assert "x-request-id" not in second

    async def test_a_redirect_to_an_allowed_host_keeps_the_headers(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A redirect to a named host keeps the request ID."""
        async with traced_session(OutboundPropagation(["127.0.0.1"])) as session:
            await in_request(lambda: get(session, f"{server.url}/redirect?to={server.url}/b"))
        assert [headers["x-request-id"] for headers in received] == [RID, RID]


@pytest.mark.usefixtures("restore_aiohttp")
class TestProcessWide:
    async def test_install_makes_every_new_session_send_the_request_id(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """After ``install``, a plain session sends the request's ID."""
        aiohttp_adapter.install(OutboundPropagation([server.host_port]))
        async with aiohttp.ClientSession() as session:
            await in_request(lambda: get(session, server.url))
        assert received[0]["x-request-id"] == RID

    async def test_uninstall_restores_init_and_silences_existing_sessions(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """``uninstall`` puts back ``__init__``; a session made before sends nothing more."""
        original = aiohttp.ClientSession.__init__
        aiohttp_adapter.install(OutboundPropagation([server.host_port]))
        assert aiohttp.ClientSession.__init__ is not original
        async with aiohttp.ClientSession() as session:
            aiohttp_adapter.uninstall()
            assert aiohttp.ClientSession.__init__ is original
            await in_request(lambda: get(session, server.url))
        assert "x-request-id" not in received[0]

    async def test_installing_twice_wraps_once(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A second ``install`` wraps nothing again: a session gets one trace config more."""
        async with aiohttp.ClientSession() as plain:
            before = len(plain.trace_configs)
        aiohttp_adapter.install(OutboundPropagation([server.host_port]))
        wrapped = aiohttp.ClientSession.__init__
        aiohttp_adapter.install(OutboundPropagation([server.host_port]))
        assert aiohttp.ClientSession.__init__ is wrapped
        async with aiohttp.ClientSession() as session:
            assert len(session.trace_configs) == before + 1
            await in_request(lambda: get(session, server.url))
        assert received[0]["x-request-id"] == RID
