"""Each request's trace: the incoming one continued, sampled first, a transaction only when sampled.

sentry-sdk's ASGI middleware builds a ``Transaction`` for every request, for
the nine in ten that a sample rate of 0.1 then drops too; that object is a
large share of its per-request cost. Here every request gets a propagation
context (its trace id, made lazily, or the incoming ``sentry-trace`` and
``baggage`` continued), so that its events and its outgoing calls carry a
trace whether it is sampled or not (see ``start_request_trace``). The
sampling decision comes next, by the SDK's own rules and with the trace's
``sample_rand``, so that every service
of a trace decides alike; only a sampled request starts a transaction (or,
with span streaming, a segment span), through the SDK's public API, which
decides again, the same way. A ``traces_sampler`` is the SDK's to call: with
one, every request goes through the SDK's decision.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.scope import Scope
from sentry_sdk.tracing import NoOpSpan, Transaction
from sentry_sdk.tracing_utils import Baggage, PropagationContext

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.state import RequestState

if TYPE_CHECKING:
    from asgi_sentry_ctx.context.tracing_mode import TracingMode

try:
    from sentry_sdk.tracing_utils import _generate_sample_rand
except ImportError:  # sentry-sdk before sample_rand: the SDK decides every request
    _generate_sample_rand = None  # type: ignore[assignment]

__all__ = [
    "ORIGIN",
    "finish_request_trace",
    "incoming_trace",
    "name_event",
    "start_request_trace",
    "transaction_name",
]

ORIGIN = "auto.http.asgi_sentry_ctx"
"""The ``origin`` of the transactions and segment spans the middleware starts."""


class _UnsampledSpan(NoOpSpan):
    """A span of an unsampled request: never sent, its data methods no-ops,
    but what it propagates is the request's trace, as an unsampled
    transaction's would be (``sentry_sdk.get_traceparent()``, ``get_baggage()``,
    the SDK's HTTP integrations): the propagation context of the request's
    scopes, the decision deferred to its ``sample_rand``."""

    def start_child(self, instrumenter: str = "sentry", **kwargs: Any) -> NoOpSpan:
        return _UnsampledSpan()

    def to_traceparent(self) -> str:
        return Scope.get_current_scope().get_active_propagation_context().to_traceparent()

    def to_baggage(self) -> Baggage | None:
        return Scope.get_current_scope().get_active_propagation_context().get_baggage()

    def iter_headers(self) -> Iterator[tuple[str, str]]:
        return Scope.get_current_scope().get_active_propagation_context().iter_headers()

    get_baggage = to_baggage
    _to_traceparent = to_traceparent
    _to_baggage = to_baggage
    _get_baggage = to_baggage
    _iter_headers = iter_headers


# The current span of every unsampled request, never entered (one object for
# all: a span per request would cost a ``Span.__init__``, state it never holds).
_UNSAMPLED = _UnsampledSpan()

# Sources better than a URL: a name given by the app or its routing.
_NAMED_SOURCES = frozenset({"route", "component", "custom", "view", "task"})


def incoming_trace(
    headers: Iterable[tuple[bytes, bytes]], *, trust_sampling: bool = True
) -> PropagationContext:
    """The request's propagation context: the incoming ``sentry-trace`` (and
    ``baggage``) continued, else a new trace whose ids are made when first read.

    A malformed or hostile header starts a new trace, as the SDK does. Without
    ``trust_sampling``, the caller's trace id and span are continued but not
    its sampling decision (see ``_untrusted``).
    """
    sentry_trace: bytes | None = None
    baggage: bytes | None = None
    for name, value in headers:
        if name == b"sentry-trace":
            sentry_trace = value
        elif name == b"baggage":
            baggage = value if baggage is None else baggage + b"," + value
    if sentry_trace is None:
        return PropagationContext()
    try:
        incoming = {"sentry-trace": sentry_trace.decode("latin-1")}
        if baggage is not None:
            incoming["baggage"] = baggage.decode("latin-1")
        trace = PropagationContext.from_incoming_data(incoming)
        return trace if trust_sampling else _untrusted(trace)
    except Exception:
        logger.warning("asgi_sentry_ctx: unreadable sentry-trace/baggage; a new trace starts")
        return PropagationContext()


def _untrusted(trace: PropagationContext) -> PropagationContext:
    """``trace`` without what its caller decided or may steer: the decision in
    ``sentry-trace`` and the ``baggage``, whose ``sample_rand`` would decide
    it too. A ``sample_rand`` of this service's own draw takes its place, so
    that this service and those it calls decide alike; a client cannot force
    a request into tracing (``-1``, a tiny ``sample_rand``, a chosen trace id).
    """
    trace.parent_sampled = None
    if trace.parent_span_id is None:
        return trace  # nothing was continued: a new trace, decided as usual
    populate = getattr(Baggage, "populate_from_propagation_context", None)
    if populate is None:  # sentry-sdk before sample_rand: its own draw decides
        trace.dynamic_sampling_context = None  # type: ignore[misc]  # its baggage, a slot there
        return trace
    baggage = populate(trace)
    baggage.sentry_items["sample_rand"] = f"{random.randrange(1_000_000) / 1_000_000:.6f}"
    trace.baggage = baggage
    return trace


def start_request_trace(
    state: RequestState, trace: PropagationContext, mode: TracingMode, current: Scope
) -> None:
    """Start the request's transaction (or segment span) if it is sampled; on
    ``state``. ``current`` is the request's own current scope.

    An unsampled request gets ``_UNSAMPLED`` as its current span instead:
    spans started in it (an outgoing call's, a query's) are no-ops, which the
    SDK builds for nothing, and the SDK's HTTP integrations then propagate the
    request's trace (``sentry-trace`` and ``baggage`` of its propagation
    context, the decision deferred to the same ``sample_rand``), where from a
    span outside any transaction they would propagate nothing.
    """
    try:
        if mode.spans_streamed:
            state.transaction = _start_segment(state)
        elif _is_sampled(trace, mode.options) is False:
            current._span = _UNSAMPLED
        else:
            state.transaction = _start_transaction(state, trace)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not start the request's transaction")


def finish_request_trace(state: RequestState, error: BaseException | None) -> None:
    """Name the request's transaction (or segment span), give it the status, and end it."""
    span = state.transaction
    state.transaction = None
    try:
        name, source = transaction_name(state)
        status = state.status
        if isinstance(span, Transaction):
            span.name = name
            span.source = source
            if status is not None and state.asgi_scope["type"] == "http":
                span.set_http_status(status)
        else:
            span.name = name
            span.set_attribute("sentry.segment.name.source", source)
            if status is not None and state.asgi_scope["type"] == "http":
                span.status = "error" if status >= 400 else "ok"
                span.set_attribute("http.response.status_code", status)
        span.__exit__(None if error is None else type(error), error, None)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not finish the request's transaction")


def transaction_name(state: RequestState) -> tuple[str, str]:
    """The request's transaction name and source: the app's namer's, else the URL path."""
    namer = state.transaction_namer
    if namer is not None:
        try:
            named = namer(state.asgi_scope)
        except Exception:
            logger.exception("asgi_sentry_ctx: the transaction namer raised; the URL path is used")
            named = None
        if named:
            return named
    return state.asgi_scope.get("path") or "/", "url"


def name_event(event: dict[str, Any], state: RequestState) -> None:
    """Give an error event the request's transaction name, unless it has a better one."""
    info = event.get("transaction_info") or {}
    if event.get("transaction") and info.get("source") in _NAMED_SOURCES:
        return
    event["transaction"], source = transaction_name(state)
    event["transaction_info"] = {**info, "source": source}


def _is_sampled(trace: PropagationContext, options: dict[str, Any]) -> bool | None:
    """The SDK's decision for ``trace``, taken without a transaction; ``None``
    when only the SDK can take it (a ``traces_sampler``, an older SDK)."""
    if callable(options.get("traces_sampler")) or _generate_sample_rand is None:
        return None
    if trace.parent_sampled is not None:
        return trace.parent_sampled
    rate = options.get("traces_sample_rate")
    if not rate:
        return False
    if rate >= 1:
        return True
    baggage = trace.baggage
    sample_rand = None if baggage is None else baggage._sample_rand()
    if sample_rand is None:
        sample_rand = _generate_sample_rand(trace.trace_id)
    return bool(sample_rand < float(rate))


def _start_transaction(state: RequestState, trace: PropagationContext) -> Transaction:
    asgi_scope = state.asgi_scope
    kind = asgi_scope["type"]
    transaction = Transaction(
        op=f"{kind}.server",
        name=asgi_scope.get("path") or "/",
        source="url",
        origin=ORIGIN,
        trace_id=trace.trace_id,
        parent_span_id=trace.parent_span_id,
        parent_sampled=trace.parent_sampled,
        baggage=_baggage_of(trace),
    )
    transaction.set_tag("asgi.type", kind)
    started = sentry_sdk.start_transaction(
        transaction, custom_sampling_context={"asgi_scope": asgi_scope}
    )
    started.__enter__()
    return started  # type: ignore[return-value]


def _baggage_of(trace: PropagationContext) -> Baggage | None:
    """The incoming baggage ``trace`` continues, if any."""
    try:
        return trace.baggage
    except AttributeError:  # sentry-sdk 2.20: the items alone, in a slot
        items = trace.dynamic_sampling_context
        return Baggage(dict(items), mutable=False) if items else None


def _start_segment(state: RequestState) -> Any:
    from sentry_sdk import traces  # sentry-sdk releases with span streaming

    asgi_scope = state.asgi_scope
    kind = asgi_scope["type"]
    segment = traces.start_span(
        name=asgi_scope.get("path") or "/",
        attributes={
            "sentry.op": f"{kind}.server",
            "sentry.origin": ORIGIN,
            "sentry.segment.name.source": "url",
            "network.protocol.name": kind,
        },
        parent_span=None,
    )
    segment.__enter__()
    return segment
