"""The request ID on a request's spans and transactions, as Sentry receives them.

Streamed spans (``trace_lifecycle="stream"``) carry scope attributes, not tags;
transactions carry tags. Tried with and without sentry-sdk's own Starlette
integration, which starts the request's segment span when it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
import sentry_sdk
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_sentry_ctx import SentryContextMiddleware, set_business_context
from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import ProductionInit
from tests.events import named, telemetry_items

# The span-streaming API, for the streamed-span tests: sentry-sdk 2.20 has none,
# and those tests are deselected there (sdk_feature "span_streaming").
with contextlib.suppress(ImportError):
    import sentry_sdk.traces

STREAMED = {"traces_sample_rate": 1.0, "trace_lifecycle": "stream"}


@pytest.fixture(params=[False, True], ids=["sdk-integration-off", "sdk-integration-on"])
def traced(request: pytest.FixtureRequest, production: ProductionInit) -> ProductionInit:
    """``init_sentry`` with every request sampled: as documented (the middleware
    starts the request's segment span), and with the SDK's own framework
    integrations kept (the SDK's middleware starts it)."""

    def init(**options: Any) -> None:
        production(framework_integrations=request.param, **options)

    return init


def starlette_app(handler: Any) -> Starlette:
    return Starlette(
        routes=[Route("/episodes/{episode_id}", handler)],
        middleware=[Middleware(SentryContextMiddleware)],
    )


async def get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


async def with_child_span(request: Request) -> JSONResponse:
    with sentry_sdk.traces.start_span(name="load episode"):
        await asyncio.sleep(0)
    return JSONResponse({"ok": True})


@pytest.mark.sdk_feature("span_streaming")
class TestStreamedSpans:
    async def test_a_requests_spans_carry_its_request_id(
        self, traced: ProductionInit, ingest: SentryIngest
    ) -> None:
        traced(**STREAMED)
        response = await get(starlette_app(with_child_span), "/episodes/1")

        spans = [
            s
            for s in telemetry_items(ingest, "span", named("load episode"))
            if s["name"] == "load episode"
        ]
        assert [s["attributes"]["request_id"] for s in spans] == [response.headers["x-request-id"]]

    async def test_the_sdks_segment_span_carries_the_request_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(framework_integrations=True, **STREAMED)
        response = await get(starlette_app(with_child_span), "/episodes/1")

        spans = telemetry_items(ingest, "span", lambda items: any(s["is_segment"] for s in items))
        [segment] = [s for s in spans if s["is_segment"]]
        assert segment["name"] == "/episodes/{episode_id}"
        assert segment["attributes"]["request_id"] == response.headers["x-request-id"]

    async def test_business_fields_that_are_tags_become_span_attributes(
        self, traced: ProductionInit, ingest: SentryIngest
    ) -> None:
        traced(**STREAMED)

        async def handler(request: Request) -> JSONResponse:
            set_business_context(podcast_id="p-1", episode=7, draft={"not": "a tag"})
            with sentry_sdk.traces.start_span(name="publish"):
                pass
            return JSONResponse({})

        await get(starlette_app(handler), "/episodes/7")

        [span] = [
            s for s in telemetry_items(ingest, "span", named("publish")) if s["name"] == "publish"
        ]
        assert span["attributes"]["podcast_id"] == "p-1"
        assert span["attributes"]["episode"] == 7
        assert "draft" not in span["attributes"]

    async def test_a_business_field_removed_leaves_the_later_spans(
        self, traced: ProductionInit, ingest: SentryIngest
    ) -> None:
        traced(**STREAMED)

        async def handler(request: Request) -> JSONResponse:
            set_business_context(action="upload")
            set_business_context(action=None)
            with sentry_sdk.traces.start_span(name="after"):
                pass
            return JSONResponse({})

        await get(starlette_app(handler), "/episodes/1")

        [span] = [
            s for s in telemetry_items(ingest, "span", named("after")) if s["name"] == "after"
        ]
        assert "action" not in span["attributes"]

    async def test_concurrent_requests_spans_carry_only_their_own_context(
        self, traced: ProductionInit, ingest: SentryIngest
    ) -> None:
        traced(**STREAMED)
        both_inside = asyncio.Barrier(2)

        async def handler(request: Request) -> JSONResponse:
            episode = request.path_params["episode_id"]
            if episode == "1":
                set_business_context(podcast_id="first-only")
            await both_inside.wait()
            with sentry_sdk.traces.start_span(name=f"work {episode}"):
                await asyncio.sleep(0)
            return JSONResponse({})

        app = starlette_app(handler)
        first, second = await asyncio.gather(get(app, "/episodes/1"), get(app, "/episodes/2"))

        spans = {
            s["name"]: s["attributes"]
            for s in telemetry_items(ingest, "span", named("work 1", "work 2"))
        }
        assert spans["work 1"]["request_id"] == first.headers["x-request-id"]
        assert spans["work 2"]["request_id"] == second.headers["x-request-id"]
        assert spans["work 1"]["podcast_id"] == "first-only"
        assert "podcast_id" not in spans["work 2"]

    async def test_a_span_outside_any_request_carries_no_request_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        production(auto_enabling_integrations=False, **STREAMED)
        await get(starlette_app(with_child_span), "/episodes/1")

        with sentry_sdk.traces.start_span(name="nightly job"):
            pass

        [job] = [
            s
            for s in telemetry_items(ingest, "span", named("nightly job"))
            if s["name"] == "nightly job"
        ]
        assert "request_id" not in job["attributes"]


async def with_child_span_legacy(request: Request) -> JSONResponse:
    with sentry_sdk.start_span(name="load episode"):
        await asyncio.sleep(0)
    return JSONResponse({"ok": True})


async def test_a_requests_transaction_carries_its_request_id_tag(
    production: ProductionInit, ingest: SentryIngest
) -> None:
    production(framework_integrations=True, traces_sample_rate=1.0)
    response = await get(starlette_app(with_child_span_legacy), "/episodes/1")

    [transaction] = ingest.wait_for_items("transaction", 1)
    assert transaction["transaction"] == "/episodes/{episode_id}"
    assert transaction["tags"]["request_id"] == response.headers["x-request-id"]


async def test_without_streamed_spans_a_request_sets_no_scope_attribute(
    production: ProductionInit,
) -> None:
    production(framework_integrations=True, traces_sample_rate=1.0)
    seen: list[dict[str, Any]] = []

    async def handler(request: Request) -> JSONResponse:
        set_business_context(podcast_id="p-1")
        seen.append(dict(getattr(sentry_sdk.get_isolation_scope(), "_attributes", {})))
        return JSONResponse({})

    await get(starlette_app(handler), "/episodes/1")
    assert "request_id" not in seen[0]
    assert "podcast_id" not in seen[0]
