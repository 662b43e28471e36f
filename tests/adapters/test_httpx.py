"""httpx: the request ID and named business fields go to allowed hosts only, per
client (event hooks) and process-wide (``install``), sync and async clients.

Each test makes real calls to a real loopback server that records what it
received, from inside a request served by the real middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from asgi_sentry_ctx import OutboundPropagation, SentryContextMiddleware, set_business_context
from asgi_sentry_ctx.adapters import httpx as httpx_adapter
from tests.asgi import ok, request
from tests.recorder import Recorder, recording_server

RID = "req-httpx-1"


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    with recording_server() as recorder:
        yield recorder


@pytest.fixture
def received(server: Recorder) -> list[dict[str, str]]:
    server.received.clear()
    return server.received


@pytest.fixture
def restore_httpx() -> Iterator[None]:
    """Whatever a test installs is uninstalled after it."""
    yield
    httpx_adapter.uninstall()


async def in_request(
    work: Callable[[], Awaitable[object]], *, header: str = "X-Request-ID"
) -> None:
    """Run ``work()`` inside a request served by the middleware, whose ID is ``RID``."""

    async def app(scope: object, receive: object, send: object) -> None:
        await work()
        await ok(scope, receive, send)

    middleware = SentryContextMiddleware(app, header_name=header)
    await request(middleware, headers=[(header.lower().encode(), RID.encode())])


def hooked_client(outbound: OutboundPropagation) -> httpx.Client:
    return httpx.Client(event_hooks={"request": [httpx_adapter.request_hook(outbound)]})


def hooked_async_client(outbound: OutboundPropagation) -> httpx.AsyncClient:
    hook = httpx_adapter.async_request_hook(outbound)
    return httpx.AsyncClient(event_hooks={"request": [hook]})


class TestPerClient:
    async def test_a_sync_client_sends_the_request_id_to_an_allowed_host(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A sync client's hook adds the request's ID (in a thread copying its context)."""
        with hooked_client(OutboundPropagation([server.host_port])) as client:
            await in_request(lambda: asyncio.to_thread(client.get, server.url))
        assert received[0]["x-request-id"] == RID

    async def test_an_async_client_sends_the_request_id_to_an_allowed_host(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """An async client's hook adds the request's ID."""
        async with hooked_async_client(OutboundPropagation(["127.0.0.1"])) as client:
            await in_request(lambda: client.get(server.url))
        assert received[0]["x-request-id"] == RID

    async def test_a_task_spawned_by_the_request_sends_its_id(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """Work in a task the request spawned carries the request's ID."""
        async with hooked_async_client(OutboundPropagation([server.host_port])) as client:
            await in_request(lambda: asyncio.create_task(client.get(server.url)))
        assert received[0]["x-request-id"] == RID

    async def test_the_middlewares_header_name_is_used(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """The ID goes under the header name of the middleware serving the request."""
        async with hooked_async_client(OutboundPropagation([server.host_port])) as client:
            await in_request(lambda: client.get(server.url), header="X-Correlation-ID")
        assert received[0]["x-correlation-id"] == RID
        assert "x-request-id" not in received[0]

    async def test_outside_any_request_nothing_is_sent(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A call made outside any request gets no header, business fields included."""
        outbound = OutboundPropagation([server.host_port], business_headers={"shop": "X-Shop"})
        set_business_context(shop="s-1")
        try:
            async with hooked_async_client(outbound) as client:
                await client.get(server.url)
        finally:
            set_business_context(shop=None)
        assert "x-request-id" not in received[0]
        assert "x-shop" not in received[0]

    async def test_a_host_outside_the_targets_gets_nothing(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A host not named (same address, other port) gets no request ID."""
        outbound = OutboundPropagation(["127.0.0.1:1", "localhost"])
        async with hooked_async_client(outbound) as client:
            await in_request(lambda: client.get(server.url))
        assert "x-request-id" not in received[0]

    async def test_the_default_sends_nothing_anywhere(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """With no targets named, no host gets the request ID."""
        async with hooked_async_client(OutboundPropagation()) as client:
            await in_request(lambda: client.get(server.url))
        assert "x-request-id" not in received[0]

    async def test_a_header_the_app_set_is_not_overwritten(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """The app's own request-ID header on the outgoing request wins."""
        async with hooked_async_client(OutboundPropagation([server.host_port])) as client:
            await in_request(lambda: client.get(server.url, headers={"x-request-id": "mine"}))
        assert received[0]["x-request-id"] == "mine"

    async def test_named_business_fields_are_sent_and_others_are_not(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """Only the fields named in ``business_headers`` leave, each under its header."""
        outbound = OutboundPropagation(
            [server.host_port], business_headers={"podcast_id": "X-Podcast-ID"}
        )

        async def work() -> None:
            set_business_context(podcast_id=123, secret_plan="world domination")
            await client.get(server.url)

        async with hooked_async_client(outbound) as client:
            await in_request(work)
        assert received[0]["x-podcast-id"] == "123"
        assert not any("world domination" in value for value in received[0].values())

    @pytest.mark.parametrize(
        "hostile",
        ["a\r\nX-Injected: 1", "caf\u00e9", "x" * 201, " padded", "", True],
        ids=["crlf", "non-ascii", "oversize", "leading-space", "empty", "bool"],
    )
    async def test_a_business_value_that_is_not_header_safe_is_skipped(
        self, server: Recorder, received: list[dict[str, str]], hostile: object
    ) -> None:
        """A field value unsafe in a header is left out; the request ID and safe fields go."""
        outbound = OutboundPropagation(
            [server.host_port], business_headers={"bad": "X-Bad", "good": "X-Good"}
        )

        async def work() -> None:
            set_business_context(bad=hostile, good="fine")
            await client.get(server.url)

        async with hooked_async_client(outbound) as client:
            await in_request(work)
        assert "x-bad" not in received[0]
        assert "x-injected" not in received[0]
        assert received[0]["x-good"] == "fine"
        assert received[0]["x-request-id"] == RID

    async def test_a_redirect_to_a_host_outside_the_targets_drops_the_headers(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A followed redirect to a host not named gets none of the headers added."""
        elsewhere = server.url.replace("127.0.0.1", "localhost")
        outbound = OutboundPropagation(["127.0.0.1"])
        async with hooked_async_client(outbound) as client:
            await in_request(
                lambda: client.get(
                    f"{server.url}/redirect", params={"to": elsewhere}, follow_redirects=True
                )
            )
        first, second = received
        assert first["x-request-id"] == RID
        assert second["host"].startswith("localhost")
        assert "x-request-id" not in second


@pytest.mark.usefixtures("restore_httpx")
class TestProcessWide:
    async def test_install_makes_every_client_send_the_request_id(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """After ``install``, plain sync and async clients send the request's ID."""
        httpx_adapter.install(OutboundPropagation([server.host_port]))
        async with httpx.AsyncClient() as client:
            await in_request(lambda: client.get(server.url))
        with httpx.Client() as sync_client:
            await in_request(lambda: asyncio.to_thread(sync_client.get, server.url))
        assert [headers["x-request-id"] for headers in received] == [RID, RID]

    async def test_uninstall_restores_the_original_send_methods(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """``uninstall`` puts back the very functions ``install`` wrapped; nothing is sent."""
        originals = (httpx.Client.send, httpx.AsyncClient.send)
        httpx_adapter.install(OutboundPropagation([server.host_port]))
        assert (httpx.Client.send, httpx.AsyncClient.send) != originals
        httpx_adapter.uninstall()
        assert (httpx.Client.send, httpx.AsyncClient.send) == originals
        assert httpx_adapter.installed() is None
        async with httpx.AsyncClient() as client:
            await in_request(lambda: client.get(server.url))
        assert "x-request-id" not in received[0]

    async def test_installing_twice_wraps_once_and_keeps_the_latest_targets(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """A second ``install`` wraps nothing again; its configuration replaces the first."""
        httpx_adapter.install(OutboundPropagation(["elsewhere.example"]))
        wrapped = (httpx.Client.send, httpx.AsyncClient.send)
        latest = OutboundPropagation([server.host_port])
        httpx_adapter.install(latest)
        assert (httpx.Client.send, httpx.AsyncClient.send) == wrapped
        assert httpx_adapter.installed() is latest
        async with httpx.AsyncClient() as client:
            await in_request(lambda: client.get(server.url))
        assert received[0]["x-request-id"] == RID

    async def test_a_client_with_the_hook_too_sends_one_value(
        self, server: Recorder, received: list[dict[str, str]]
    ) -> None:
        """Both modes at once add the header once."""
        outbound = OutboundPropagation([server.host_port])
        httpx_adapter.install(outbound)
        async with hooked_async_client(outbound) as client:
            response = await in_request_returning(client, server.url)
        assert response.request.headers.get_list("x-request-id") == [RID]
        assert received[0]["x-request-id"] == RID


async def in_request_returning(client: httpx.AsyncClient, url: str) -> httpx.Response:
    responses: list[httpx.Response] = []

    async def work() -> None:
        responses.append(await client.get(url))

    await in_request(work)
    return responses[0]
