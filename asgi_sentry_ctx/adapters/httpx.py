"""httpx: the request ID (and named business fields) on outgoing calls to allowed hosts.

Two ways to turn it on, both driven by one
[`OutboundPropagation`][asgi_sentry_ctx.OutboundPropagation]:

- per client, patching nothing: an event hook, ``request_hook(outbound)`` for
  ``httpx.Client`` and ``async_request_hook(outbound)`` for
  ``httpx.AsyncClient`` (httpx awaits the hooks of an async client);
- process-wide, with one call: ``install(outbound)`` wraps ``httpx.Client.send``
  and ``httpx.AsyncClient.send`` (the public entry points every request of
  every client goes through, the ones sentry-sdk's httpx integration wraps)
  and nothing else of httpx. ``uninstall()`` puts them back; ``install`` again
  wraps nothing twice, it only replaces the configuration.

A header the app set on the request itself is kept. An event hook runs for
each hop of a redirect that httpx follows (``follow_redirects=True``) and
takes the headers it added off a hop to a host that is not a target; the
process-wide wrapper sees the first hop only, so a redirect it follows
carries them on, as sentry-sdk's own ``sentry-trace`` does.

httpx is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgi_sentry_ctx.adapters.support import DEFAULT_PORTS, OutboundPropagation, logger

if TYPE_CHECKING:
    import httpx

__all__ = ["async_request_hook", "install", "installed", "request_hook", "uninstall"]

# ``request.extensions`` key: the headers added to the first hop. httpx hands
# a request's extensions to the request of the next redirect hop, so a later
# hop knows which of its headers came from here and not from the app.
_ADDED = "asgi_sentry_ctx.added_headers"


def _propagate(outbound: OutboundPropagation, request: httpx.Request) -> None:
    """Add to ``request`` the headers ``outbound`` gives its URL now, except
    those it carries already; on a later redirect hop to a host that is not a
    target, take off those added to an earlier one. Never raises."""
    try:
        url = request.url
        port = url.port or DEFAULT_PORTS.get(url.scheme)
        added = request.extensions.get(_ADDED)
        if added is not None:
            if not outbound.allows(url.host, port):
                _take_off(request.headers, added)
                request.extensions[_ADDED] = ()
            return
        headers = request.headers
        new = [
            (name, value)
            for name, value in outbound.headers_for(url.host, port)
            if name not in headers
        ]
        for name, value in new:
            headers[name] = value
        if new:
            request.extensions[_ADDED] = tuple(new)
    except Exception:
        logger.exception("asgi_sentry_ctx: could not add headers to an outgoing httpx request")


def _take_off(headers: httpx.Headers, added: tuple[tuple[str, str], ...]) -> None:
    for name, value in added:
        if headers.get(name) == value:  # unless the app changed it since
            del headers[name]


def request_hook(outbound: OutboundPropagation) -> Callable[[httpx.Request], None]:
    """An event hook for an ``httpx.Client``:
    ``httpx.Client(event_hooks={"request": [request_hook(outbound)]})``."""

    def add_headers(request: httpx.Request) -> None:
        _propagate(outbound, request)

    return add_headers


def async_request_hook(outbound: OutboundPropagation) -> Callable[[httpx.Request], Awaitable[None]]:
    """An event hook for an ``httpx.AsyncClient``:
    ``httpx.AsyncClient(event_hooks={"request": [async_request_hook(outbound)]})``."""

    async def add_headers(request: httpx.Request) -> None:
        _propagate(outbound, request)

    return add_headers


# Process-wide mode: the configuration in force, and the originals wrapped.
_outbound: OutboundPropagation | None = None
_originals: dict[type[Any], tuple[Any, Any]] = {}  # class: (its send, our wrapper)


def install(outbound: OutboundPropagation) -> None:
    """Add ``outbound``'s headers to the requests of every httpx client of the process.

    Wraps ``httpx.Client.send`` and ``httpx.AsyncClient.send`` once; calling
    it again only replaces ``outbound``. Undo with
    [`uninstall`][asgi_sentry_ctx.adapters.httpx.uninstall].
    """
    global _outbound
    import httpx

    _outbound = outbound
    if _originals:
        return
    real_send = httpx.Client.send
    real_async_send = httpx.AsyncClient.send

    @functools.wraps(real_send)
    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if _outbound is not None:
            _propagate(_outbound, request)
        return real_send(self, request, **kwargs)

    @functools.wraps(real_async_send)
    async def async_send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        if _outbound is not None:
            _propagate(_outbound, request)
        return await real_async_send(self, request, **kwargs)

    _originals[httpx.Client] = (real_send, send)
    _originals[httpx.AsyncClient] = (real_async_send, async_send)
    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = async_send  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo [`install`][asgi_sentry_ctx.adapters.httpx.install]: outgoing
    requests get nothing, and ``send`` is the original again (unless something
    wrapped it after ``install``: then the wrapper stays, doing nothing)."""
    global _outbound
    _outbound = None
    # Only our own wrapper is replaced: restoring over a later wrapper (a
    # sentry-sdk integration set up since) would remove that one instead.
    for cls, (real, wrapper) in _originals.items():
        if cls.send is wrapper:
            cls.send = real
        else:
            logger.warning(
                "asgi_sentry_ctx: %s.send was wrapped again since install; "
                "its wrapper stays, doing nothing",
                cls.__name__,
            )
    _originals.clear()


def installed() -> OutboundPropagation | None:
    """The configuration [`install`][asgi_sentry_ctx.adapters.httpx.install]
    put in force process-wide, or ``None``."""
    return _outbound
