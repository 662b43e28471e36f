"""An incoming request ID from an ordered list of headers: the first valid one
wins, each candidate is validated like the request-ID header, the source is
on the event; and the trust guard on incoming sampling decisions."""

from __future__ import annotations

from typing import Any

import pytest
import sentry_sdk
from hypothesis import given
from hypothesis import strategies as st

from asgi_sentry_ctx import SentryContextMiddleware, get_request_id, is_valid_request_id
from asgi_sentry_ctx.context.incoming_ids import incoming_sources, traceparent_trace_id
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import request
from tests.conftest import ProductionInit
from tests.events import events_before_marker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
PREFERENCES = ["X-Request-ID", "X-Correlation-ID", "traceparent"]
HOSTILE_VALUES = [
    b"zq7hostile\r\nSet-Cookie: stolen=1",
    b"zq7hostile\x00\x1b[31m",
    b"zq7hostile" + b"a" * 10_000,
    "zq7hostile-équipe".encode() + b"\xff",
    b"zq7hostile id",
]


class Seen:
    """An app that records the request ID and the request-ID header it sees."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.headers: list[list[bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.ids.append(get_request_id())
        self.headers.append([v for k, v in scope["headers"] if k == b"x-request-id"])
        sentry_sdk.capture_message("seen")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def served(headers: list[tuple[bytes, bytes]], **options: Any) -> tuple[Seen, Any]:
    app = Seen()
    options.setdefault("incoming_headers", PREFERENCES)
    response = await request(SentryContextMiddleware(app, **options), headers=headers)
    return app, response


class TestTraceparent:
    def test_a_valid_traceparent_gives_its_trace_id(self) -> None:
        """Version 00, four fields: the trace id."""
        assert traceparent_trace_id(TRACEPARENT) == TRACE_ID

    def test_a_later_version_may_add_fields(self) -> None:
        """Version 01 with a fifth field still gives its trace id (W3C forward compatibility)."""
        assert traceparent_trace_id(f"01-{TRACE_ID}-00f067aa0ba902b7-01-extra") == TRACE_ID

    @pytest.mark.parametrize(
        "value",
        [
            f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
            f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
            f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
            f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # uppercase hex
            f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # short trace id
            f"00-{TRACE_ID}-00f067aa0ba902b7-1",  # short flags
            f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has four fields
            f"00-{TRACE_ID}-00f067aa0ba902b7-01\r\nX-Evil: 1",
            "",
        ],
    )
    def test_a_malformed_traceparent_gives_none(self, value: str) -> None:
        """Every malformed value is refused."""
        assert traceparent_trace_id(value) is None

    def test_an_unknown_header_name_is_refused(self) -> None:
        """A name that is no header name fails at set-up, not per request."""
        with pytest.raises(ValueError, match="not a header name"):
            incoming_sources(["X-Request-ID", "X Bad"])


class TestPreferenceList:
    async def test_the_first_valid_header_wins_and_is_the_source(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """X-Request-ID before X-Correlation-ID: its value, tagged as the source."""
        production()
        app, response = await served([(b"x-correlation-id", b"corr-1"), (b"x-request-id", b"r-1")])

        [event] = events_before_marker(ingest)
        assert app.ids == ["r-1"]
        assert response.header("x-request-id") == ["r-1"]
        assert event["tags"]["request_id.source"] == "X-Request-ID"

    @pytest.mark.parametrize("hostile", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
    async def test_a_hostile_first_header_falls_through_to_the_next(self, hostile: bytes) -> None:
        """The next valid candidate is used, and the app never sees the hostile value."""
        app, response = await served([(b"x-request-id", hostile), (b"x-correlation-id", b"c-9")])

        assert app.ids == ["c-9"]
        assert app.headers == [[b"c-9"]]
        assert response.header("x-request-id") == ["c-9"]

    async def test_a_traceparents_trace_id_is_the_request_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Only a traceparent came: its trace id, source ``traceparent``."""
        production()
        app, _ = await served([(b"traceparent", TRACEPARENT.encode())])

        [event] = events_before_marker(ingest)
        assert app.ids == [TRACE_ID]
        assert event["tags"]["request_id.source"] == "traceparent"

    async def test_a_malformed_traceparent_gives_a_new_id(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Nothing valid came: a new ID, source ``generated``."""
        production()
        app, _ = await served([(b"traceparent", b"00-zz-11-01")])

        [event] = events_before_marker(ingest)
        assert app.ids[0] is not None
        assert len(app.ids[0]) == 32
        assert event["tags"]["request_id.source"] == "generated"

    async def test_a_repeated_header_is_skipped(self) -> None:
        """Two X-Correlation-IDs are ambiguous: the traceparent wins."""
        headers = [
            (b"x-correlation-id", b"c-1"),
            (b"x-correlation-id", b"c-2"),
            (b"traceparent", TRACEPARENT.encode()),
        ]
        app, _ = await served(headers)

        assert app.ids == [TRACE_ID]

    @pytest.mark.parametrize(
        ("header", "value", "expected"),
        [
            (
                "X-Amzn-Trace-Id",
                "Self=1-67891234-abc;Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                "1-5759e988-bd862e3fe1be46a994272793",
            ),
            (
                "X-Cloud-Trace-Context",
                "105445aa7843bc8bf206b12000100000/1;o=1",
                "105445aa7843bc8bf206b12000100000",
            ),
        ],
    )
    async def test_a_cloud_trace_header_gives_its_trace_id(
        self, header: str, value: str, expected: str
    ) -> None:
        """Amazon's Root and Google's trace id are read out of their headers."""
        app, _ = await served(
            [(header.lower().encode(), value.encode())], incoming_headers=[header]
        )

        assert app.ids == [expected]

    async def test_untrusted_incoming_ids_are_all_ignored(self) -> None:
        """``trust_incoming=False``: every header of the list is ignored."""
        app, _ = await served([(b"x-correlation-id", b"c-1")], trust_incoming=False)

        assert app.ids[0] != "c-1"

    async def test_without_a_list_no_source_is_recorded(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """The default, one header: events carry no ``request_id.source`` tag."""
        production()
        await served([(b"x-request-id", b"r-1")], incoming_headers=None)

        [event] = events_before_marker(ingest)
        assert "request_id.source" not in event["tags"]

    @given(
        values=st.lists(
            st.one_of(st.binary(max_size=200), st.sampled_from([b"ok-1", TRACEPARENT.encode()])),
            min_size=3,
            max_size=3,
        )
    )
    async def test_the_request_id_is_always_the_first_valid_candidate_or_new(
        self, values: list[bytes]
    ) -> None:
        """Whatever the three headers hold, the ID is valid and the first valid one's, or new."""
        headers = [(b"x-request-id", values[0]), (b"x-correlation-id", values[1])]
        headers.append((b"traceparent", values[2]))
        app, response = await served(headers)

        [chosen] = app.ids
        assert chosen is not None
        assert is_valid_request_id(chosen)
        assert response.header("x-request-id") == [chosen]
        candidates = [_decoded(values[0]), _decoded(values[1])]
        candidates.append(traceparent_trace_id(_decoded(values[2]) or ""))
        valid = [c for c in candidates if c and is_valid_request_id(c)]
        if valid:
            assert chosen == valid[0]


def _decoded(value: bytes) -> str | None:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


class TestSamplingTrust:
    async def test_an_untrusted_caller_cannot_force_tracing(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Guard on, rate 0: ``-1`` from the caller starts no transaction; the trace id goes on."""
        production(traces_sample_rate=0.0)
        headers = [
            (b"sentry-trace", f"{TRACE_ID}-00f067aa0ba902b7-1".encode()),
            (b"baggage", b"sentry-sample_rand=0.000001,sentry-sampled=true"),
        ]
        await request(
            SentryContextMiddleware(Seen(), trust_incoming_sampling=False), headers=headers
        )

        [event] = events_before_marker(ingest)
        assert event["contexts"]["trace"]["trace_id"] == TRACE_ID
        assert not any(env.payloads("transaction") for env in ingest.envelopes)

    async def test_by_default_the_callers_decision_is_followed(
        self, production: ProductionInit, ingest: SentryIngest
    ) -> None:
        """Guard off (the SDK's behaviour): ``-1`` at rate 0 is traced."""
        production(traces_sample_rate=0.0)
        headers = [(b"sentry-trace", f"{TRACE_ID}-00f067aa0ba902b7-1".encode())]
        await request(SentryContextMiddleware(Seen()), headers=headers)

        [transaction] = ingest.wait_for_items("transaction", 1)
        assert transaction["contexts"]["trace"]["trace_id"] == TRACE_ID

    @pytest.mark.sdk_feature("sample_rand")
    async def test_an_untrusted_callers_sample_rand_is_replaced(
        self, production: ProductionInit
    ) -> None:
        """Guard on: what this service passes on carries its own ``sample_rand``."""
        production(traces_sample_rate=0.5)
        baggage: list[str | None] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            baggage.append(sentry_sdk.get_baggage())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        headers = [
            (b"sentry-trace", f"{TRACE_ID}-00f067aa0ba902b7".encode()),
            (b"baggage", b"sentry-sample_rand=0.000001,sentry-trace_id=" + TRACE_ID.encode()),
        ]
        await request(SentryContextMiddleware(app, trust_incoming_sampling=False), headers=headers)

        assert baggage[0] is not None
        assert "sentry-sample_rand=" in baggage[0]
        assert "sentry-sample_rand=0.000001" not in baggage[0]
