"""The documented set-ups: each framework's app with Sentry set up as a user copies it from docs.

A set-up is a framework and a row, named ``framework/row`` (``fastapi/ours``).
The rows:

- ``bare``: the app alone, Sentry not initialised;
- ``sdk`` / ``sdk_off``: ``sentry_sdk.init(dsn=..., traces_sample_rate=0.1)`` (or
  ``None``) as sentry-sdk's docs show it, so with its auto-enabled framework
  integrations, plus the logging integration at INFO (breadcrumbs) and
  WARNING (events);
- ``ours`` / ``ours_off``: ``init_sentry(...)`` with its defaults and the
  framework's adapter, as docs/<framework>.md shows them, traces 0.1 (its
  default) and off;
- ``correlation_id``: asgi-correlation-id's middleware on the ``sdk`` set-up.

Envelopes go to ``DiscardTransport``: only the per-request cost is counted.
The SDK's framework integrations patch framework classes for the whole
process, so each set-up runs in a process of its own (``benchmarks.worker``
in-process, ``benchmarks.serve`` under uvicorn).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration

from benchmarks.configs import DISCARD_DSN, DiscardTransport
from benchmarks.documented_apps import FRAMEWORKS, PATH, BuiltApp, Layers, build

# Tracing off, as sentry-sdk's row has it: ``traces_sample_rate=None``.
OURS_TRACES_OFF = None


@dataclass(frozen=True)
class Row:
    """One way of setting Sentry up, the same for every framework."""

    name: str
    label: str
    sentry: Callable[[], None]
    layers: Layers = field(default_factory=Layers)


def _no_sentry() -> None:
    """The bare row: Sentry is never initialised."""


def _sdk(traces: float | None) -> Callable[[], None]:
    """sentry-sdk as its docs set it up: auto-enabled integrations and logging at INFO/WARNING."""

    def init() -> None:
        sentry_sdk.init(
            dsn=DISCARD_DSN,
            traces_sample_rate=traces,
            integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.WARNING)],
            transport=DiscardTransport,
        )

    return init


def _ours(traces: float | None) -> Callable[[], None]:
    """``init_sentry`` as our docs set it up (the environment given: no SENTRY_ENVIRONMENT)."""

    def init() -> None:
        from asgi_sentry_ctx import init_sentry

        on = init_sentry(
            DISCARD_DSN,
            environment="production",
            traces_sample_rate=traces,
            transport=DiscardTransport,
        )
        if not on:  # a stray ASGI_SENTRY_CTX_STORE, say: the row would time no Sentry at all
            raise RuntimeError("init_sentry left Sentry off (see its log line)")

    return init


ROWS: tuple[Row, ...] = (
    Row("bare", "bare app", _no_sentry),
    Row("sdk", "sentry-sdk, traces 0.1", _sdk(0.1)),
    Row("sdk_off", "sentry-sdk, traces off", _sdk(None)),
    Row("ours", "asgi-sentry-ctx, traces 0.1", _ours(0.1), Layers(ours=True)),
    Row("ours_off", "asgi-sentry-ctx, traces off", _ours(OURS_TRACES_OFF), Layers(ours=True)),
    Row(
        "correlation_id",
        "asgi-correlation-id + sentry-sdk, traces 0.1",
        _sdk(0.1),
        Layers(correlation_id=True),
    ),
)
ROW_BY_NAME = {row.name: row for row in ROWS}


def setup_name(framework: str, row: str) -> str:
    """The name a worker or server is started with: ``framework/row``."""
    return f"{framework}/{row}"


def is_setup_name(name: str) -> bool:
    """Whether ``name`` names a documented set-up (the other configurations have no ``/``)."""
    framework, _, row = name.partition("/")
    return framework in FRAMEWORKS and row in ROW_BY_NAME


def start(name: str) -> BuiltApp:
    """Set Sentry up as set-up ``name`` says, in this process, then build its app."""
    if not is_setup_name(name):
        raise ValueError(f"unknown documented set-up {name!r}")
    framework, _, row_name = name.partition("/")
    row = ROW_BY_NAME[row_name]
    row.sentry()  # before the app: the SDK's Litestar integration hooks Litestar.__init__
    return build(framework, row.layers)


def scope_template(built: BuiltApp, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (the harness's ``GET /`` scope) turned into the authenticated ``GET /me``."""
    return {
        **base,
        "path": PATH,
        "raw_path": PATH.encode("ascii"),
        "headers": [*base["headers"], *built.auth_headers],
    }
