"""Each request's trace, as the middleware owns it: the incoming trace continued,
the sampling decision taken first, a transaction only for a sampled request,
named by the app's namer, with its status; events carry the request's trace."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sentry_sdk

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request, websocket
from tests.conftest import ProductionInit
from tests.events import events_before_marker

TRACE_ID = "771a43a4192642f0b136d5159a501700"
PARENT_SPAN_ID = "b0e6f15b45c36b12"


async def failing(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError(f"{scope['path']} failed")


async def answering(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def sentry_trace(sampled: str = "") -> tuple[bytes, bytes]:
    value = f"{TRACE_ID}-{PARENT_SPAN_ID}" + (f"-{sampled}" if sampled else "")
    return (b"sentry-trace", value.encode())


async def fail(app: Any, path: str = "/fail", **options: Any) -> None:
    with pytest.raises(RuntimeError):
        await request(app, path, **options)


class TestPropagation:
    async def test_each_request_has_a_trace_of_its_own(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Two requests, none sampled: two events with two trace ids."""
        production(traces_sample_rate=0.0)
        app = SentryContextMiddleware(failing)
        await fail(app, "/a")
        await fail(app, "/b")

        first, second = ingest.wait_for_events(2)
        assert first["contexts"]["trace"]["trace_id"] != second["contexts"]["trace"]["trace_id"]

    async def test_an_incoming_sentry_trace_is_continued(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """The caller's trace id is the event's, none sampled."""
        production(traces_sample_rate=0.0)
        await fail(SentryContextMiddleware(failing), headers=[sentry_trace()])

        [event] = ingest.wait_for_events(1)
        assert event["contexts"]["trace"]["trace_id"] == TRACE_ID

    async def test_a_malformed_sentry_trace_starts_a_new_trace(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """A hostile header is no trace id: the event gets a fresh one."""
        production(traces_sample_rate=1.0)
        headers = [(b"sentry-trace", b"\r\nnot-a-trace" * 500), (b"baggage", b"=,;" * 500)]
        await fail(SentryContextMiddleware(failing), headers=headers)

        [event] = ingest.wait_for_events(1)
        trace_id = event["contexts"]["trace"]["trace_id"]
        assert len(trace_id) == 32
        assert "not-a-trace" not in trace_id

    async def test_an_outgoing_call_continues_the_requests_trace(
        self, production: ProductionInit
    ) -> None:
        """What the SDK would put on an outgoing request carries the caller's trace id."""
        production(traces_sample_rate=0.0)
        seen: list[str | None] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(sentry_sdk.get_traceparent())
            await answering(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[sentry_trace()])
        assert seen[0] is not None
        assert seen[0].startswith(TRACE_ID)


class TestSampling:
    async def test_a_sampled_request_sends_a_transaction_with_its_status(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Sampled: one transaction, op ``http.server``, named by the URL path, with the status."""
        production(traces_sample_rate=1.0)
        await request(SentryContextMiddleware(answering), "/episodes/7")

        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["transaction"] == "/episodes/7"
        assert transaction["transaction_info"] == {"source": "url"}
        assert transaction["contexts"]["trace"]["op"] == "http.server"
        assert transaction["contexts"]["trace"]["origin"] == "auto.http.asgi_sentry_ctx"
        assert transaction["contexts"]["trace"]["status"] == "ok"
        assert transaction["tags"]["http.status_code"] == "201"

    async def test_an_unsampled_requests_spans_are_no_ops(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Rate 0: the spans a request starts are no-ops; no transaction is sent."""
        production(traces_sample_rate=0.0)
        spans: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            with sentry_sdk.start_span(op="db", name="select episodes") as span:
                spans.append(span)
            await answering(scope, receive, send)

        await request(SentryContextMiddleware(app))
        events_before_marker(ingest)
        assert len(spans) == 1
        transaction = spans[0].containing_transaction  # none (sentry-sdk 2.20: unsampled)
        assert transaction is None or transaction.sampled is False
        assert not any(env.payloads("transaction") for env in ingest.envelopes)

    async def test_an_unsampled_requests_outgoing_call_carries_its_trace(
        self, production: ProductionInit
    ) -> None:
        """As the SDK's HTTP integrations add headers inside their span, the
        unsampled request's trace goes out, its decision deferred."""
        production(traces_sample_rate=0.0)
        sent: list[dict[str, str]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            with sentry_sdk.start_span(op="http.client"):
                scope_ = sentry_sdk.get_current_scope()
                sent.append(dict(scope_.iter_trace_propagation_headers()))
                sent.append({"sentry-trace": sentry_sdk.get_traceparent() or ""})
            await answering(scope, receive, send)

        await request(SentryContextMiddleware(app), headers=[sentry_trace()])
        assert [headers["sentry-trace"][:32] for headers in sent] == [TRACE_ID, TRACE_ID]
        assert "baggage" in sent[0]

    async def test_an_error_belongs_to_its_sampled_transaction(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """The error event's trace and span are the transaction's; the transaction failed."""
        production(traces_sample_rate=1.0)
        await fail(SentryContextMiddleware(failing))

        [event] = ingest.wait_for_events(1)
        [transaction] = ingest.wait_for_items("transaction", 1)
        trace = transaction["contexts"]["trace"]
        assert event["contexts"]["trace"]["trace_id"] == trace["trace_id"]
        assert event["contexts"]["trace"]["span_id"] == trace["span_id"]
        assert trace["status"] == "internal_error"

    @pytest.mark.parametrize(("flag", "rate", "sampled"), [("1", 0.0, True), ("0", 1.0, False)])
    async def test_the_callers_sampling_decision_is_followed(
        self,
        production: ProductionInit,
        ingest: SentryIngest,
        flag: str,
        rate: float,
        sampled: bool,
    ) -> None:
        """``-1`` samples a request at rate 0, ``-0`` drops one at rate 1, as the SDK does."""
        production(traces_sample_rate=rate)
        await request(SentryContextMiddleware(answering), headers=[sentry_trace(flag)])

        events_before_marker(ingest)
        transactions = [t for env in ingest.envelopes for t in env.payloads("transaction")]
        assert len(transactions) == int(sampled)
        if sampled:
            assert transactions[0]["contexts"]["trace"]["trace_id"] == TRACE_ID
            assert transactions[0]["contexts"]["trace"]["parent_span_id"] == PARENT_SPAN_ID

    @pytest.mark.sdk_feature("sample_rand")
    @pytest.mark.parametrize(("sample_rand", "sampled"), [("0.05", True), ("0.5", False)])
    async def test_the_traces_sample_rand_decides_as_in_every_service(
        self, production: ProductionInit, ingest: SentryIngest, sample_rand: str, sampled: bool
    ) -> None:
        """A deferred incoming trace is sampled at 0.1 exactly when its ``sample_rand`` < 0.1."""
        production(traces_sample_rate=0.1)
        baggage = (b"baggage", f"sentry-trace_id={TRACE_ID},sentry-sample_rand={sample_rand}")
        await request(
            SentryContextMiddleware(answering),
            headers=[sentry_trace(), (baggage[0], baggage[1].encode())],
        )

        events_before_marker(ingest)
        transactions = [t for env in ingest.envelopes for t in env.payloads("transaction")]
        assert len(transactions) == int(sampled)

    async def test_a_traces_sampler_sees_the_asgi_scope(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """``traces_sampler`` decides, with the request's ASGI scope in its context."""
        paths: list[str] = []

        def sampler(context: dict[str, Any]) -> float:
            paths.append(context["asgi_scope"]["path"])
            return 1.0 if context["asgi_scope"]["path"] == "/kept" else 0.0

        production(traces_sampler=sampler)
        app = SentryContextMiddleware(answering)
        await request(app, "/kept")
        await request(app, "/dropped")

        events_before_marker(ingest)
        transactions = [t for env in ingest.envelopes for t in env.payloads("transaction")]
        assert paths == ["/kept", "/dropped"]
        assert [t["transaction"] for t in transactions] == ["/kept"]

    async def test_a_websocket_transaction_has_its_op(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """A websocket request's transaction: op ``websocket.server``, no HTTP status."""
        production(traces_sample_rate=1.0)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})

        await websocket(SentryContextMiddleware(app))

        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["contexts"]["trace"]["op"] == "websocket.server"
        assert "http.status_code" not in transaction.get("tags", {})


class TestNames:
    async def test_the_namer_names_the_transaction_and_the_error(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """The namer's name and source go on the transaction and the error event."""
        production(traces_sample_rate=1.0)
        app = SentryContextMiddleware(failing, transaction_namer=lambda scope: ("/{id}", "route"))
        await fail(app)

        [event] = ingest.wait_for_events(1)
        [transaction] = ingest.wait_for_items("transaction", 1)
        for item in (event, transaction):
            assert item["transaction"] == "/{id}"
            assert item["transaction_info"] == {"source": "route"}

    async def test_an_unsampled_requests_error_is_named_too(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Unsampled, the error event still gets the request's name."""
        production(traces_sample_rate=0.0)
        app = SentryContextMiddleware(
            failing, transaction_namer=lambda scope: ("fail", "component")
        )
        await fail(app)

        [event] = ingest.wait_for_events(1)
        assert (event["transaction"], event["transaction_info"]["source"]) == ("fail", "component")

    async def test_a_raising_namer_falls_back_to_the_path(
        self,
        production: ProductionInit,
        ingest: SentryIngest,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A namer that raises is logged; the URL path names the request."""
        production(traces_sample_rate=1.0)

        def namer(scope: Any) -> tuple[str, str]:
            raise LookupError("no route")

        await request(SentryContextMiddleware(answering, transaction_namer=namer), "/x")

        [transaction] = ingest.wait_for_items("transaction", 1)
        assert (transaction["transaction"], transaction["transaction_info"]["source"]) == (
            "/x",
            "url",
        )
        assert any(
            r.levelno == logging.ERROR and "transaction namer raised" in r.getMessage()
            for r in caplog.records
        )

    async def test_a_name_set_outside_requests_is_not_a_requests(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """A transaction name given at start-up stays out of every request's events."""
        production(traces_sample_rate=1.0)
        sentry_sdk.get_isolation_scope().set_transaction_name("startup")
        sentry_sdk.get_current_scope().set_transaction_name("startup")
        try:
            await fail(SentryContextMiddleware(failing), "/after-startup")
        finally:
            for scope in (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
                scope._transaction = None
                scope._transaction_info = {}

        [event] = ingest.wait_for_events(1)
        [transaction] = ingest.wait_for_items("transaction", 1)
        assert event["transaction"] == transaction["transaction"] == "/after-startup"
