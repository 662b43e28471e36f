"""``init_sentry``: ``sentry_sdk.init`` with the defaults of a production service.

It never raises: a malformed DSN, sample rate or environment value is
reported in one clear log line and Sentry stays off, so a typo in a
deployment's environment never takes the service down.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sentry_sdk
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.utils import BadDsn, Dsn

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.isolation import record_process_base
from asgi_sentry_ctx.context.log_records import add_request_attributes
from asgi_sentry_ctx.sentry.framework_integrations import disable_replaced, step_aside
from asgi_sentry_ctx.sentry.hooks import setup_once
from asgi_sentry_ctx.sentry.noise import DEFAULT_NOISE_STATUS_CODES, BeforeSend, NoiseFilter
from asgi_sentry_ctx.sentry.scrubbing import scrub_event
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.transport import StoreTransport, store_transport

__all__ = ["init_sentry"]

DEV_ENVIRONMENTS = frozenset({"dev", "development", "local", "test", "testing"})
_ENVIRONMENT = re.compile(r"[^\s/\x00-\x1f\x7f]{1,64}")


class _ConfigError(ValueError):
    pass


def init_sentry(
    dsn: str | None = None,
    *,
    store: str | os.PathLike[str] | EventStore | None = None,
    noise_status_codes: Iterable[int] = DEFAULT_NOISE_STATUS_CODES,
    noise_exception_types: Iterable[type[BaseException]] = (),
    enable_in_dev: bool | None = None,
    framework_integrations: bool = False,
    **options: Any,
) -> bool:
    """Initialise Sentry for a production service; return whether it is on.

    Defaults, each overridable by the keyword of the same name:

    - ``dsn`` from ``SENTRY_DSN``; ``environment`` from ``SENTRY_ENVIRONMENT``
      (default ``"production"``); ``traces_sample_rate`` from
      ``SENTRY_TRACES_SAMPLE_RATE`` (default 0.1; ``None`` given turns tracing
      off, as in ``sentry_sdk.init``); ``profiles_sample_rate``
      from ``SENTRY_PROFILES_SAMPLE_RATE`` (default 0.0);
    - ``max_breadcrumbs=100``, ``include_local_variables=True``;
    - logging: breadcrumbs from INFO, events from WARNING; SQLAlchemy and HTTPX
      integrations when those libraries are installed;
    - sentry-sdk's Starlette, FastAPI, Litestar, Starlite and Quart
      integrations off: the middleware owns each request (its scopes, trace,
      sampling, transaction name and errors) and does their work for less.
      ``framework_integrations=True`` keeps them (their cost per request comes
      back: docs/performance.md), as does passing one in ``integrations``.
      Should no middleware be installed, errors still reach Sentry through
      the server's error log, without request data, and a warning says so;
    - ``before_send``: the [`NoiseFilter`][asgi_sentry_ctx.NoiseFilter] (configured by
      ``noise_status_codes`` and ``noise_exception_types``), then your own
      ``before_send`` if given, then scrubbing; ``before_send_transaction``:
      yours if given, then scrubbing. A ``before_send`` of yours that
      raises is logged and the event is kept;
    - ``before_send_log`` (structured logs, ``enable_logs=True``): the request's
      ``request_id`` (and ``user.id``) as attributes, then yours if given.

    ``store`` (or ``ASGI_SENTRY_CTX_STORE``): a path to the local event store
    (SQLite). Every envelope is written there first and forwarded to the DSN in
    the background, so nothing is lost while Sentry is down or rate-limiting,
    nor at exit. Without a DSN (or in a development environment) events stay in
    the store: ``python -m asgi_sentry_ctx events list`` shows them.

    Sentry stays off, with one log line saying why, when there is neither a
    DSN nor a store, when the environment is a development one (``dev``,
    ``development``, ``local``, ``test``, ``testing``; pass
    ``enable_in_dev=True`` or set ``ASGI_SENTRY_CTX_ENABLE_DEV=1`` to report
    from there too) and there is no store, or when a value is malformed. Every
    other keyword goes to ``sentry_sdk.init`` unchanged: ``data_collection``
    (sentry-sdk 2.7x) among them, which the library's request data and
    scrubbing then follow too. The library never passes ``send_default_pii``
    itself (sentry-sdk 2.7x deprecates it).
    """
    try:
        settings = _read_settings(dsn, store, options)
        route = _route(settings, enable_in_dev)
    except _ConfigError as exc:
        logger.error("asgi_sentry_ctx: Sentry disabled: %s", exc)
        return False
    if route is None:
        return False
    noise = NoiseFilter(status_codes=noise_status_codes, exception_types=noise_exception_types)
    sdk_options = _sdk_options(settings, route, noise, options)
    disable_replaced(sdk_options, keep=framework_integrations)
    return _start(settings, route, sdk_options)


@dataclass(frozen=True)
class _Settings:
    """What was asked for: each keyword, else its environment variable, else the default."""

    dsn: str | None
    environment: str
    traces: float | None  # None: tracing off
    profiles: float
    store: str | os.PathLike[str] | EventStore | None


@dataclass(frozen=True)
class _Route:
    """Where events go once Sentry is on."""

    dsn: str | None  # None: they stay in the store
    store: EventStore | None
    local_reason: str  # why they stay in the store, when they do


def _read_settings(
    dsn: str | None, store: str | os.PathLike[str] | EventStore | None, options: dict[str, Any]
) -> _Settings:
    """Resolve and validate the DSN, environment, sample rates and store settings."""
    dsn = dsn if dsn is not None else os.environ.get("SENTRY_DSN", "").strip() or None
    environment = str(
        options.get("environment") or os.environ.get("SENTRY_ENVIRONMENT") or "production"
    ).strip()
    if not _is_valid_environment(environment):
        raise _ConfigError(f"environment {environment!r} is not a valid Sentry environment")
    traces: float | None = None
    # ``traces_sample_rate=None``, given: tracing off, as in ``sentry_sdk.init``.
    if options.get("traces_sample_rate", 0.0) is not None:
        traces = _rate(options.get("traces_sample_rate"), "SENTRY_TRACES_SAMPLE_RATE", 0.1)
    profiles = _rate(options.get("profiles_sample_rate"), "SENTRY_PROFILES_SAMPLE_RATE", 0.0)
    if store is None:
        store = os.environ.get("ASGI_SENTRY_CTX_STORE", "").strip() or None
    if store is not None and "transport" in options:
        raise _ConfigError("pass either store or transport, not both")
    return _Settings(dsn, environment, traces, profiles, store)


def _route(settings: _Settings, enable_in_dev: bool | None) -> _Route | None:
    """Decide whether Sentry is on and where events go; ``None`` (logged) when it is off."""
    dsn, store, environment = settings.dsn, settings.store, settings.environment
    if dsn is None and store is None:
        logger.info(
            "asgi_sentry_ctx: Sentry disabled: no DSN (set SENTRY_DSN) "
            "and no local event store (set ASGI_SENTRY_CTX_STORE)"
        )
        return None
    if dsn is not None:
        try:
            Dsn(dsn)
        except BadDsn as exc:
            raise _ConfigError(f"SENTRY_DSN is malformed ({exc})") from None
    if enable_in_dev is None:
        enable_in_dev = os.environ.get("ASGI_SENTRY_CTX_ENABLE_DEV", "").lower() in {
            "1",
            "true",
            "yes",
        }
    local_reason = "no DSN"
    if dsn is not None and environment.lower() in DEV_ENVIRONMENTS and not enable_in_dev:
        if store is None:
            logger.info(
                "asgi_sentry_ctx: Sentry disabled: environment %r is a development one "
                "(set ASGI_SENTRY_CTX_ENABLE_DEV=1 to report from it)",
                environment,
            )
            return None
        # A developer's events stay on their machine, in the store.
        dsn = None
        local_reason = f"environment {environment!r} is a development one"
    return _Route(dsn, _open_store(store), local_reason)


def _sdk_options(
    settings: _Settings, route: _Route, noise: NoiseFilter, options: dict[str, Any]
) -> dict[str, Any]:
    """The keywords for ``sentry_sdk.init``: the defaults, the caller's, the resolved ones."""
    sdk_options: dict[str, Any] = {
        "max_breadcrumbs": 100,
        "include_local_variables": True,
        **options,
        "dsn": route.dsn,
        "environment": settings.environment,
        "traces_sample_rate": settings.traces,
        "profiles_sample_rate": settings.profiles,
        "integrations": [*_default_integrations(), *options.get("integrations", ())],
        "before_send": _chain(noise, options.get("before_send"), "before_send"),
        # Transactions carry request data and extra too, and never see before_send.
        "before_send_transaction": _chain(
            None, options.get("before_send_transaction"), "before_send_transaction"
        ),
    }
    if "before_send_log" in DEFAULT_OPTIONS:  # sentry-sdk releases with structured logs
        experiments = options.get("_experiments") or {}
        user_hook = options.get("before_send_log") or experiments.get("before_send_log")
        sdk_options["before_send_log"] = _chain_log(user_hook)
    if route.store is not None:
        # The SDK builds a transport class (with its final options) only when
        # there is a DSN: without one, it needs an instance.
        sdk_options["transport"] = (
            store_transport(route.store)
            if route.dsn is not None
            else StoreTransport(None, store=route.store)
        )
    return sdk_options


def _start(settings: _Settings, route: _Route, sdk_options: dict[str, Any]) -> bool:
    """Initialise the SDK, set the library up and say where events go; whether it worked."""
    try:
        sentry_sdk.init(**sdk_options)
    except Exception as exc:
        logger.error("asgi_sentry_ctx: Sentry disabled: sentry_sdk.init failed: %s", exc)
        return False
    step_aside(sentry_sdk.get_client())
    setup_once()
    record_process_base()
    logger.info(
        "asgi_sentry_ctx: Sentry initialised (environment=%s, traces_sample_rate=%s, "
        "max_breadcrumbs=%s)%s",
        settings.environment,
        settings.traces,
        sdk_options["max_breadcrumbs"],
        _where(route),
    )
    return True


def _where(route: _Route) -> str:
    """The end of the "initialised" log line: the store events go through, if any."""
    if route.store is None:
        return ""
    if route.dsn is None:
        return f"; events stay in the local store {route.store.path} ({route.local_reason})"
    return f"; events go through the local store {route.store.path}"


def _is_valid_environment(name: str) -> bool:
    # Sentry's rules: at most 64 characters, no whitespace or "/", not "None";
    # control characters and the path-like "." and ".." are refused as well.
    return _ENVIRONMENT.fullmatch(name) is not None and name not in {".", "..", "None"}


def _open_store(store: str | os.PathLike[str] | EventStore | None) -> EventStore | None:
    if store is None or isinstance(store, EventStore):
        return store
    try:
        return EventStore(store)
    except (OSError, sqlite3.Error) as exc:
        path = os.fspath(store)
        raise _ConfigError(f"the event store {path!r} cannot be opened ({exc})") from None


def _rate(given: Any, variable: str, default: float) -> float:
    raw = given if given is not None else os.environ.get(variable, "").strip() or default
    try:
        if isinstance(raw, bool):  # float(True) is 1.0: almost surely a mistake
            raise TypeError
        rate = float(raw)
    except (TypeError, ValueError):
        raise _ConfigError(f"{variable} must be a number from 0 to 1, got {raw!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise _ConfigError(f"{variable} must be a number from 0 to 1, got {raw!r}")
    return rate


def _default_integrations() -> list[Integration]:
    integrations: list[Integration] = [LoggingIntegration(level=20, event_level=30)]
    if importlib.util.find_spec("sqlalchemy") is not None:
        from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration

        integrations.append(SqlalchemyIntegration())
    if importlib.util.find_spec("httpx") is not None:
        from sentry_sdk.integrations.httpx import HttpxIntegration

        integrations.append(HttpxIntegration())
    return integrations


def _chain(noise: NoiseFilter | None, user_hook: BeforeSend | None, name: str) -> BeforeSend:
    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        kept = event if noise is None else noise(event, hint)
        if kept is None:
            return None
        if user_hook is not None:
            try:
                kept = user_hook(kept, hint)
            except Exception:
                logger.exception("asgi_sentry_ctx: your %s raised; the event is kept", name)
            if kept is None:
                return None
        try:
            return scrub_event(kept, hint)
        except Exception:
            # Sending an unscrubbed event could leak a credential: drop it.
            logger.exception("asgi_sentry_ctx: scrubbing failed; the event is dropped")
            return None

    return before_send


def _chain_log(user_hook: BeforeSend | None) -> BeforeSend:
    def before_send_log(log: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        try:
            log = add_request_attributes(log, hint)
        except Exception:
            logger.exception("asgi_sentry_ctx: could not add the request ID to a log")
        if user_hook is None:
            return log
        try:
            return user_hook(log, hint)
        except Exception:
            logger.exception("asgi_sentry_ctx: your before_send_log raised; the log is kept")
            return log

    return before_send_log
