"""Side by side: what Sentry receives from sentry-sdk's own set-up and from ours.

Framework-neutral. A parity test gives two apps that do the same thing (the
app as sentry-sdk's docs set it up, and the same app with our adapter
installed), the requests to send (``Probe``) and the modules the app's own
frames come from; :func:`run_parity` then runs both set-ups in this process,
one after the other, against the loopback ingest:

1. sentry-sdk's: ``sentry_sdk.init(dsn=..., traces_sample_rate=1.0)`` with its
   auto-enabled integrations (through the ``sentry_init`` fixture, its
   ``auto_enabling_integrations`` turned back on);
2. ours: ``init_sentry(dsn, traces_sample_rate=1.0)`` (the ``production``
   fixture), which turns the SDK's framework integrations off. The SDK
   patches framework classes once per process, and its patches pass through
   when the client has no such integration. Which integrations a client
   gets, though, depends on earlier ``init`` calls of the process
   (:func:`sdk_integrations`): the harness sets that state before each run
   and checks it, so neither the order of the runs nor other tests matter.

Each app is served by uvicorn and each probe sent with httpx. After a probe
the harness waits for the probe's transaction (every request is sampled, and
both set-ups finish the transaction after reporting the request's error),
then for a marker message: everything the probe produced arrived before it.

What is compared, per probe (:func:`summary`): whether events were sent and
how many; each event's ``transaction``, ``transaction_info.source``,
``level``, request block (method, URL, query string, headers as sent, the
origin normalised since the two servers listen on different ports), each
exception's type, value and the app's frames (module and function), ``user``,
and its trace (whether it is the trace of the request's transaction, and the
incoming trace when the probe sent a ``sentry-trace`` header); and the
request's transaction: name, source, op, HTTP status, trace. Not compared:
``mechanism`` (it names the reporter), tags, breadcrumbs, contexts other than
the trace (ours adds the request ID, business context...).

The result is a list of :class:`Difference`. A parity test asserts that it
equals the list its framework's docs give under "Compared with sentry-sdk's
integration", so that a new difference fails the test until it is
documented, and a documented one that went away fails it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import sentry_sdk
import sentry_sdk.integrations as sdk_registry
from sentry_sdk.integrations import Integration

from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import reset_sdk
from tests.events import events_before_marker
from tests.servers import serve

__all__ = [
    "INCOMING_PARENT_SPAN",
    "INCOMING_TRACE",
    "Difference",
    "Observed",
    "Parity",
    "Probe",
    "compare",
    "init_ours",
    "observe",
    "run_parity",
    "sdk_integrations",
    "summary",
]

# An incoming trace, sampled by the caller: both set-ups must continue it.
INCOMING_TRACE = "771a43a4192642f0b136d5159a501700"
INCOMING_PARENT_SPAN = "b3b6a6f4c8d2e1f0"
SENTRY_TRACE = f"{INCOMING_TRACE}-{INCOMING_PARENT_SPAN}-1"


@dataclass(frozen=True)
class Probe:
    """One request to send to both set-ups, named for the behaviour it exercises."""

    name: str
    path: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    continues_trace: bool = False  # send a sampled ``sentry-trace``/``baggage``

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.continues_trace:
            headers["sentry-trace"] = SENTRY_TRACE
            headers["baggage"] = f"sentry-trace_id={INCOMING_TRACE},sentry-sampled=true"
        return headers


@dataclass
class Observed:
    """What Sentry received for one probe: its error events and its transactions."""

    status: int
    events: list[dict[str, Any]]
    transactions: list[dict[str, Any]]


@dataclass(frozen=True)
class Difference:
    """A field of a probe's summary that is not the same in both set-ups."""

    probe: str
    field: str
    sdk: Any
    ours: Any


@dataclass(frozen=True)
class Parity:
    """Both set-ups' summaries, by probe name, and what differs between them."""

    sdk: Mapping[str, dict[str, Any]]
    ours: Mapping[str, dict[str, Any]]

    @property
    def differences(self) -> list[Difference]:
        return compare(self.sdk, self.ours)

    def sdk_events(self) -> dict[str, int]:
        """How many events sentry-sdk's set-up sent per probe: a test's check
        that its probes do what they say (a probe that reports nothing in
        both set-ups proves nothing about reporting)."""
        return {probe: fields["events"] for probe, fields in self.sdk.items()}


Init = Callable[..., None]
AppFactory = Callable[[], Any]


def run_parity(
    ingest: SentryIngest,
    *,
    sdk_init: Init,
    our_init: Init,
    sdk_app: AppFactory,
    our_app: AppFactory,
    probes: Sequence[Probe],
    app_modules: Iterable[str],
    integrations: Sequence[type[Integration]],
    sdk_options: Mapping[str, Any] | None = None,
    our_options: Mapping[str, Any] | None = None,
) -> Parity:
    """Send ``probes`` through sentry-sdk's set-up, then through ours; both summaries.

    ``sdk_init`` and ``our_init`` are the ``sentry_init`` and ``production``
    fixtures; ``sdk_app`` and ``our_app`` build the app once Sentry is
    initialised (the SDK patches framework classes at ``init``), the latter
    with our adapter installed. ``integrations`` are the SDK's integrations
    for the framework (``StarletteIntegration``...): on in the SDK's run, off
    in ours, and checked to be. ``sdk_options`` go to ``sentry_sdk.init``
    (``integrations=[StarletteIntegration(transaction_style="endpoint")]``),
    ``our_options`` to ``init_sentry``.
    """
    modules = tuple(app_modules)
    with sdk_integrations(integrations, enabled=True):
        sdk_init(auto_enabling_integrations=True, traces_sample_rate=1.0, **(sdk_options or {}))
        try:
            _check_integrations(integrations, enabled=True)
            sdk = observe(sdk_app(), probes, ingest)
        finally:
            reset_sdk()
    ingest.clear()
    with sdk_integrations(integrations, enabled=False):
        our_init(traces_sample_rate=1.0, transport_queue_size=10_000, **(our_options or {}))
        try:
            _check_integrations(integrations, enabled=False)
            ours = observe(our_app(), probes, ingest)
        finally:
            reset_sdk()
    return Parity(
        {name: summary(seen, modules) for name, seen in sdk.items()},
        {name: summary(seen, modules) for name, seen in ours.items()},
    )


@contextmanager
def sdk_integrations(classes: Sequence[type[Integration]], *, enabled: bool) -> Iterator[None]:
    """Make the next ``sentry_sdk.init`` enable (or not) these integrations, whatever
    an earlier ``init`` of this process did; on exit, leave them installed.

    sentry-sdk sets an integration up once per process and remembers it
    (2.75: ``_processed_integrations``, ``_installed_integrations``): an
    integration installed by an earlier ``init`` is enabled by every later
    one, ``disabled_integrations`` notwithstanding, and one an earlier
    ``init`` disabled is never set up by a later one. A test process runs
    both set-ups (and other tests' ``init``), so this puts the registry in
    the state a fresh process would have. Tests only: it edits the SDK's
    private registry.
    """
    ids = {cls.identifier for cls in classes}
    installed = sdk_registry._installed_integrations
    processed = sdk_registry._processed_integrations
    if enabled:
        # Never set up (an earlier init disabled it): let this init set it up.
        processed.difference_update(ids - installed)
        yield
        return
    hidden = ids & installed
    installed.difference_update(hidden)  # set up already: now left out of the client
    try:
        yield
    finally:
        installed.update(hidden)


def init_ours(
    our_init: Init,
    integrations: Sequence[type[Integration]],
    *,
    framework_integrations: bool,
    **options: Any,
) -> None:
    """``init_sentry(**options)`` through ``our_init`` (the ``production`` fixture),
    with sentry-sdk's framework ``integrations`` on (``framework_integrations=True``)
    or off (the default), whatever earlier ``init`` calls of this process did."""
    with sdk_integrations(integrations, enabled=framework_integrations):
        our_init(framework_integrations=framework_integrations, **options)
    _check_integrations(integrations, enabled=framework_integrations)


def _check_integrations(classes: Sequence[type[Integration]], *, enabled: bool) -> None:
    client = sentry_sdk.get_client()
    state = {cls.identifier: client.get_integration(cls) is not None for cls in classes}
    assert state == dict.fromkeys(state, enabled), f"integrations enabled: {state}"


def observe(app: Any, probes: Sequence[Probe], ingest: SentryIngest) -> dict[str, Observed]:
    """Serve ``app`` and send each probe; what Sentry received for each, by probe name."""
    seen: dict[str, Observed] = {}
    with serve(app) as url:
        for probe in probes:
            ingest.clear()
            # A connection per probe: uvicorn closes one after an unhandled
            # error, and a reused one can be reset under the next request.
            with httpx.Client(base_url=url) as client:
                headers = probe.request_headers()
                response = client.request(probe.method, probe.path, headers=headers)
            transactions = _transactions(ingest)
            events = events_before_marker(ingest)
            seen[probe.name] = Observed(response.status_code, events, transactions)
    return seen


def _transactions(ingest: SentryIngest) -> list[dict[str, Any]]:
    """The probe's transaction, once it arrived: the client may have its response
    before the server finished the request (and reported its error)."""
    try:
        return list(ingest.wait_for_items("transaction", 1))
    except TimeoutError:
        return []  # a set-up that sends none: a difference, not a crash


def summary(seen: Observed, app_modules: tuple[str, ...]) -> dict[str, Any]:
    """The compared fields of what one probe produced, flat, by field name."""
    fields: dict[str, Any] = {"status": seen.status, "events": len(seen.events)}
    trace_ids = {_trace(t).get("trace_id") for t in seen.transactions}
    fields["transactions"] = len(seen.transactions)
    for index, event in enumerate(seen.events):
        for name, value in _event_fields(event, app_modules, trace_ids).items():
            fields[f"event[{index}].{name}"] = value
    for index, transaction in enumerate(seen.transactions):
        for name, value in _transaction_fields(transaction).items():
            fields[f"transaction[{index}].{name}"] = value
    return fields


def _event_fields(
    event: dict[str, Any], app_modules: tuple[str, ...], trace_ids: set[Any]
) -> dict[str, Any]:
    trace = _trace(event)
    request = event.get("request") or {}
    source = (event.get("transaction_info") or {}).get("source")
    name = event.get("transaction")
    fields = {
        "transaction": _origin_normalised(name) if source == "url" else name,
        "source": source,
        "level": event.get("level"),
        "request.method": request.get("method"),
        "request.url": _origin_normalised(request.get("url")),
        "request.query_string": request.get("query_string"),
        "request.headers": _headers(request.get("headers")),
        "user": event.get("user") or None,
        "trace.in_request_transaction": trace.get("trace_id") in trace_ids,
        "trace.continues_incoming": trace.get("trace_id") == INCOMING_TRACE,
    }
    for index, value in enumerate((event.get("exception") or {}).get("values") or ()):
        fields[f"exception[{index}]"] = (
            value.get("type"),
            value.get("value"),
            _app_frames(value, app_modules),
        )
    return fields


def _transaction_fields(transaction: dict[str, Any]) -> dict[str, Any]:
    trace = _trace(transaction)
    data = trace.get("data") or {}
    source = (transaction.get("transaction_info") or {}).get("source")
    name = transaction.get("transaction")
    return {
        # A request that matched no route is named by its URL: its port is the server's.
        "name": _origin_normalised(name) if source == "url" else name,
        "source": source,
        "op": trace.get("op"),
        "http_status": data.get("http.response.status_code"),
        "status": trace.get("status"),
        "trace.continues_incoming": trace.get("trace_id") == INCOMING_TRACE,
        "trace.parent_span_id": trace.get("parent_span_id"),
    }


def _trace(event: dict[str, Any]) -> dict[str, Any]:
    return dict((event.get("contexts") or {}).get("trace") or {})


def _app_frames(value: dict[str, Any], app_modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    frames = (value.get("stacktrace") or {}).get("frames") or ()
    return tuple(
        (frame.get("module"), frame.get("function"))
        for frame in frames
        if str(frame.get("module")).startswith(app_modules)
    )


def _origin_normalised(url: Any) -> Any:
    """The URL with ``server`` for its host and port: each set-up has its own server."""
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc="server"))


def _headers(headers: Any) -> Any:
    if not isinstance(headers, dict):
        return headers
    normalised = {name.lower(): value for name, value in headers.items()}
    if "host" in normalised:
        normalised["host"] = "server"
    return normalised


def compare(
    sdk: Mapping[str, dict[str, Any]], ours: Mapping[str, dict[str, Any]]
) -> list[Difference]:
    """Every field of every probe whose value is not the same in both summaries."""
    differences = []
    for probe in sdk.keys() | ours.keys():
        theirs, mine = sdk.get(probe, {}), ours.get(probe, {})
        for name in sorted(theirs.keys() | mine.keys()):
            if theirs.get(name) != mine.get(name):
                differences.append(Difference(probe, name, theirs.get(name), mine.get(name)))
    return sorted(differences, key=lambda d: (d.probe, d.field))
