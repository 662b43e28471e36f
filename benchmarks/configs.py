"""The configurations compared: which middleware wraps the app, and how Sentry is set up.

Sentry, when initialised, gets a transport that discards envelopes, so that
only the per-request cost is counted; the ``ours_event_sent`` row alone uses
the SDK's real HTTP transport, posting to a loopback ingest, to show what
actually sending an event costs. sentry-sdk's framework integrations are
auto-enabled only in the ``sentry_own`` rows (that is what ``sentry_sdk.init()``
does by default when Starlette is installed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from sentry_sdk.transport import Transport

from asgi_sentry_ctx import SentryContextMiddleware
from benchmarks.apps import APP_KINDS, Workload, build_app

# Never contacted: the discarding transport stands in for the HTTP one.
DISCARD_DSN = "http://public@127.0.0.1:9/1"


class DiscardTransport(Transport):
    """Drops every envelope, counting them (so a run can show events were built)."""

    envelopes = 0

    def capture_envelope(self, envelope: Envelope) -> None:
        DiscardTransport.envelopes += 1


class PassThrough:
    """The floor of one middleware layer: a pure-ASGI class that only calls the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


Wrap = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    wrap: Wrap
    # None: Sentry not initialised. Otherwise extra ``sentry_sdk.init`` options.
    sentry: dict[str, Any] | None = None
    auto_integrations: bool = False
    workload: Workload = field(default_factory=Workload)
    send_events: bool = False  # real HTTP transport to a loopback ingest
    kinds: tuple[str, ...] = APP_KINDS

    def build(self, kind: str) -> Any:
        return self.wrap(kind, build_app(kind, self.workload))


def _bare(kind: str, app: Any) -> Any:
    return app


def _pass_through(kind: str, app: Any) -> Any:
    return PassThrough(app)


def _ours(kind: str, app: Any) -> Any:
    return SentryContextMiddleware(app)


def _sentry_asgi(kind: str, app: Any) -> Any:
    return SentryAsgiMiddleware(app)


def _sentry_own(kind: str, app: Any) -> Any:
    # On Starlette and FastAPI the auto-enabled integration wraps the app in
    # SentryAsgiMiddleware itself (it patches ``Starlette.__call__``).
    return SentryAsgiMiddleware(app) if kind == "raw" else app


def _ours_inside_sentry(kind: str, app: Any) -> Any:
    if kind == "raw":
        return SentryAsgiMiddleware(SentryContextMiddleware(app))
    # ``add_middleware`` puts ours inside the integration's patched ``__call__``.
    app.add_middleware(SentryContextMiddleware)
    return app


def _ours_around_sentry(kind: str, app: Any) -> Any:
    return SentryContextMiddleware(_sentry_own(kind, app))


def _correlation_id(kind: str, app: Any) -> Any:
    from asgi_correlation_id import CorrelationIdMiddleware

    return CorrelationIdMiddleware(app)


def _starlette_context(kind: str, app: Any) -> Any:
    from starlette_context.middleware import RawContextMiddleware
    from starlette_context.plugins import CorrelationIdPlugin, RequestIdPlugin

    return RawContextMiddleware(app, plugins=(RequestIdPlugin(), CorrelationIdPlugin()))


TRACES_OFF: dict[str, Any] = {}
TRACES_01: dict[str, Any] = {"traces_sample_rate": 0.1}

CONFIGS: tuple[Config, ...] = (
    Config("bare", "bare app", _bare),
    # The scaling section's baseline: the same app calls the SDK (breadcrumbs)
    # with and without our middleware, so Sentry must be on in both.
    Config("bare_sentry", "bare app, Sentry on", _bare, sentry=TRACES_OFF, kinds=()),
    Config("pass_through", "pass-through middleware (floor of one layer)", _pass_through),
    Config("ours_no_sentry", "ours, Sentry not initialised", _ours),
    Config("ours", "ours, Sentry on, traces off", _ours, sentry=TRACES_OFF),
    Config("ours_traces", "ours, traces_sample_rate=0.1", _ours, sentry=TRACES_01),
    Config("sentry_asgi", "SentryAsgiMiddleware, traces off", _sentry_asgi, sentry=TRACES_OFF),
    Config(
        "sentry_asgi_traces", "SentryAsgiMiddleware, traces 0.1", _sentry_asgi, sentry=TRACES_01
    ),
    Config(
        "sentry_own",
        "sentry-sdk's own integration, traces off",
        _sentry_own,
        sentry=TRACES_OFF,
        auto_integrations=True,
    ),
    Config(
        "ours_in_sentry",
        "ours inside sentry-sdk's integration",
        _ours_inside_sentry,
        sentry=TRACES_OFF,
        auto_integrations=True,
    ),
    Config(
        "ours_around_sentry",
        "ours around sentry-sdk's integration",
        _ours_around_sentry,
        sentry=TRACES_OFF,
        auto_integrations=True,
    ),
    Config("correlation_id", "asgi-correlation-id 5.0.1", _correlation_id, sentry=TRACES_OFF),
    Config(
        "starlette_context",
        "starlette-context 0.5.1 (request+correlation ID)",
        _starlette_context,
        sentry=TRACES_OFF,
    ),
    Config(
        "ours_event",
        "ours + 1 event/request, discarded",
        _ours,
        sentry=TRACES_OFF,
        workload=Workload(capture=True),
        kinds=("raw",),
    ),
    Config(
        "ours_event_sent",
        "ours + 1 event/request, sent over HTTP",
        _ours,
        sentry=TRACES_OFF,
        workload=Workload(capture=True),
        send_events=True,
        kinds=("raw",),
    ),
)

BY_NAME = {config.name: config for config in CONFIGS}
REFERENCE = "sentry_asgi"  # the ratio column compares with this row


def init_sentry_for(config: Config, ingest_dsn: str | None = None) -> None:
    """Set Sentry up as ``config`` says, in this (worker or server) process."""
    if config.sentry is None:
        return
    options: dict[str, Any] = {
        "auto_enabling_integrations": config.auto_integrations,
        **config.sentry,
    }
    if config.send_events:
        if ingest_dsn is None:
            raise ValueError(f"{config.name} needs the DSN of a loopback ingest")
        options.update(dsn=ingest_dsn, transport_queue_size=100_000)
    else:
        options.update(dsn=DISCARD_DSN, transport=DiscardTransport)
    sentry_sdk.init(**options)
