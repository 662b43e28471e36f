"""sentry-sdk's framework integrations, which the middleware stands in for.

sentry-sdk's Starlette, FastAPI, Litestar, Starlite and Quart integrations
wrap every request in the SDK's ASGI middleware (a scope fork, and a
``Transaction`` even for the requests a sample rate then drops) and read its
request data up front: most of what the SDK costs per request
(docs/performance.md). The middleware does that work itself, once: it forks
the scopes, continues the trace, samples first, names the transaction by the
matched route, reports the request's errors and 5xx HTTP exceptions. So
``init_sentry`` turns those integrations off, unless they are asked for
(``framework_integrations=True``, or one passed in ``integrations``). The
SDK's other integrations (logging, httpx, SQLAlchemy...) stay on.

Without the middleware installed, an app's unhandled errors still reach
Sentry through the server's error log and the logging integration, with no
request data; the first such event logs a warning that says why.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from typing import Any

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.processors import register_once

__all__ = [
    "disable_replaced",
    "note_middleware",
    "replaced_integrations",
    "step_aside",
    "warn_without_middleware",
]

_REPLACED = (
    ("starlette", "StarletteIntegration"),
    ("fastapi", "FastApiIntegration"),
    ("litestar", "LitestarIntegration"),
    ("starlite", "StarliteIntegration"),
    ("quart", "QuartIntegration"),
)

_middleware_seen = False
_replaced: list[type[Any]] = []  # what the last init_sentry turned off
_warned = False


def disable_replaced(sdk_options: dict[str, Any], *, keep: bool) -> None:
    """Add the integrations the middleware replaces to ``sdk_options``'
    ``disabled_integrations`` (with any the app disabled itself), unless
    ``keep``; and register the warning for errors no middleware owned."""
    global _replaced
    _replaced = [] if keep else replaced_integrations(sdk_options.get("integrations", ()))
    if _replaced:
        sdk_options["disabled_integrations"] = [
            *sdk_options.get("disabled_integrations", ()),
            *_replaced,
        ]
        register_once(warn_without_middleware)


def step_aside(client: Any) -> None:
    """Take the replaced integrations out of ``client``, once it is initialised.

    ``disabled_integrations`` keeps an integration from being set up, but one
    that an earlier ``sentry_sdk.init`` of the process set up (its framework
    patched) is enabled again by every later one. Its patches ask the client
    for their integration on each request and step aside when it has none.
    """
    integrations = getattr(client, "integrations", None)
    if isinstance(integrations, dict):
        for integration in _replaced:
            integrations.pop(integration.identifier, None)


def replaced_integrations(explicit: Iterable[object]) -> list[type[Any]]:
    """The installed frameworks' sentry-sdk integrations, less those in ``explicit``.

    An integration the app passes explicitly is one it asked for: it stays on.
    """
    asked = {getattr(integration, "identifier", None) for integration in explicit}
    replaced: list[type[Any]] = []
    for framework, name in _REPLACED:
        if importlib.util.find_spec(framework) is None:
            continue  # not installed: nothing to auto-enable either
        try:
            module = importlib.import_module(f"sentry_sdk.integrations.{framework}")
        except Exception:  # DidNotEnable: a framework release the SDK refuses
            continue
        integration = getattr(module, name, None)
        if integration is not None and integration.identifier not in asked:
            replaced.append(integration)
    return replaced


def note_middleware() -> None:
    """Record that a middleware exists in this process (see ``warn_without_middleware``)."""
    global _middleware_seen
    _middleware_seen = True


def warn_without_middleware(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """A global event processor: warn once when an error is reported while no
    middleware was ever installed, the framework integrations being off."""
    global _warned
    if _replaced and not _middleware_seen and not _warned and hint and hint.get("exc_info"):
        _warned = True
        logger.warning(
            "asgi_sentry_ctx: an error was reported, but no SentryContextMiddleware is "
            "installed and init_sentry turned sentry-sdk's framework integrations off: "
            "events carry no request data. Install the middleware (see the docs of your "
            "framework) or pass framework_integrations=True to init_sentry."
        )
    return event
