"""aiohttp: the request ID (and named business fields) on outgoing calls to allowed hosts.

Two ways to turn it on, both driven by one
[`OutboundPropagation`][asgi_sentry_ctx.OutboundPropagation]:

- per session, patching nothing: ``trace_config(outbound)``, an
  ``aiohttp.TraceConfig`` to pass as
  ``aiohttp.ClientSession(trace_configs=[trace_config(outbound)])``;
- process-wide, with one call: ``install(outbound)`` wraps
  ``aiohttp.ClientSession.__init__`` to add that trace config to every session
  created from then on, as sentry-sdk's aiohttp integration adds its own, and
  touches nothing else of aiohttp. ``uninstall()`` puts ``__init__`` back, and
  sessions made in between stop adding headers; ``install`` again wraps
  nothing twice, it only replaces the configuration.

A header the app set on the request itself is kept. aiohttp follows
redirects by default, sending the first hop's headers on: on a hop to a host
that is not a target, the headers added here are taken off.

aiohttp is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from asgi_sentry_ctx.adapters.support import OutboundPropagation, logger

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDict
    from yarl import URL

__all__ = ["install", "installed", "trace_config", "uninstall"]


def trace_config(outbound: OutboundPropagation) -> aiohttp.TraceConfig:
    """A ``TraceConfig`` that adds ``outbound``'s headers to a session's requests."""
    return _trace_config(lambda: outbound)


def _trace_config(current: Callable[[], OutboundPropagation | None]) -> aiohttp.TraceConfig:
    """A ``TraceConfig`` adding the headers of ``current()`` (``None``: nothing)."""
    import aiohttp

    async def on_request_start(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        outbound = current()
        context.asgi_sentry_ctx_added = ()
        if outbound is not None:
            context.asgi_sentry_ctx_added = _add(outbound, params.url, params.headers)

    async def on_request_redirect(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        added = getattr(context, "asgi_sentry_ctx_added", ())
        if added:
            _leave_redirect(current(), params, added)

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_redirect.append(on_request_redirect)
    return config


def _add(
    outbound: OutboundPropagation, url: URL, headers: CIMultiDict[str]
) -> tuple[tuple[str, str], ...]:
    """Add ``outbound``'s headers for ``url`` that ``headers`` lacks; return them."""
    try:
        if url.host is None:
            return ()
        # yarl's ``port`` is the scheme's default when the URL names none.
        new = tuple(
            (name, value)
            for name, value in outbound.headers_for(url.host, url.port)
            if name not in headers
        )
        for name, value in new:
            headers[name] = value
        return new
    except Exception:
        logger.exception("asgi_sentry_ctx: could not add headers to an outgoing aiohttp request")
        return ()


def _leave_redirect(
    outbound: OutboundPropagation | None,
    params: aiohttp.TraceRequestRedirectParams,
    added: tuple[tuple[str, str], ...],
) -> None:
    """Before aiohttp follows ``params.response``'s redirect: take the added
    headers off unless the next host is a target (which aiohttp has not
    computed yet, so it is read from ``Location`` the way aiohttp will)."""
    try:
        from yarl import URL

        location = params.response.headers.get("Location") or ""
        target = params.url.join(URL(location))
        if outbound is not None and target.host and outbound.allows(target.host, target.port):
            return
        headers = params.headers
        for name, value in added:
            if headers.get(name) == value:  # unless the app changed it since
                del headers[name]
    except Exception:
        logger.exception("asgi_sentry_ctx: could not check an aiohttp redirect's host")


# Process-wide mode: the configuration in force, the original ``__init__`` and our wrapper.
_outbound: OutboundPropagation | None = None
_originals: list[Any] = []


def install(outbound: OutboundPropagation) -> None:
    """Add ``outbound``'s headers to the requests of every aiohttp session created from now on.

    Wraps ``aiohttp.ClientSession.__init__`` once; calling it again only
    replaces ``outbound``. Undo with
    [`uninstall`][asgi_sentry_ctx.adapters.aiohttp.uninstall].
    """
    global _outbound
    import aiohttp

    _outbound = outbound
    if _originals:
        return
    real_init = aiohttp.ClientSession.__init__
    # One trace config for every session: it reads the configuration in force.
    shared = _trace_config(installed)

    @functools.wraps(real_init)
    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trace_configs"] = [*(kwargs.get("trace_configs") or ()), shared]
        real_init(self, *args, **kwargs)

    _originals.extend([real_init, init])
    aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo [`install`][asgi_sentry_ctx.adapters.aiohttp.install]: no session
    adds headers any more, and ``ClientSession.__init__`` is the original again
    (unless something wrapped it after ``install``: then that wrapper stays)."""
    global _outbound
    import aiohttp

    _outbound = None
    if not _originals:
        return
    real_init, init = _originals
    # Only our own wrapper is replaced: restoring over a later wrapper would remove that one.
    if aiohttp.ClientSession.__init__ is init:
        aiohttp.ClientSession.__init__ = real_init  # type: ignore[method-assign]
    else:
        logger.warning("asgi_sentry_ctx: ClientSession.__init__ was wrapped again since install")
    _originals.clear()


def installed() -> OutboundPropagation | None:
    """The configuration [`install`][asgi_sentry_ctx.adapters.aiohttp.install]
    put in force process-wide, or ``None``."""
    return _outbound
