"""Outbound propagation: which outgoing HTTP requests carry the request ID, and what else.

A request ID is only useful across services if it travels with the calls a
request makes. It must not travel everywhere, though: a third-party API has no
business learning our request IDs, and business fields (a podcast ID, an
account) can say more than an ID does. So nothing is sent until the app names
the hosts that may receive it, in the style of sentry-sdk's
``trace_propagation_targets``, but with the opposite default: that option's
default matches every host, and it is never read here.

What an outgoing request gets, and only during a request or in work carrying
its context (tasks it spawned, threads that copied its context):

- the request ID, under the header name of the middleware serving the request
  (``X-Request-ID`` by default), unless ``header_name`` says otherwise;
- the business fields named in ``business_headers``, each under its header,
  when its value is header-safe (printable ASCII, at most 200 characters).

A header the app set on the outgoing request itself is never overwritten.
The HTTP clients' adapters (``asgi_sentry_ctx.adapters.httpx`` and
``asgi_sentry_ctx.adapters.aiohttp``) ask this module what to add; it knows no
HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.context.request_ids import is_valid_request_id
from asgi_sentry_ctx.context.state import RequestState, current_request

__all__ = ["DEFAULT_PORTS", "OutboundPropagation"]

DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443}
"""The port a URL of each scheme means when it names none."""

_DEFAULT_HEADER = "X-Request-ID"
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII, no leading or trailing space, at most 200 characters: no
# CR/LF (header injection), nothing a proxy could mangle, nothing huge.
_SAFE_VALUE = re.compile(r"[!-~](?:[ -~]{0,198}[!-~])?")
# A host name or IPv4 address as a target names it (IPv6 goes in brackets).
_HOST = re.compile(r"\.?[a-z0-9_](?:[a-z0-9_.\-]*[a-z0-9_])?")
_NOTHING: tuple[tuple[str, str], ...] = ()


class OutboundPropagation:
    """Which outgoing requests get the request ID, under which header, and
    which business fields go with it.

    ``targets`` name the hosts that may receive them; the default, empty,
    sends nothing anywhere. Each target is one of:

    - a host name or IP address, matched exactly (case-insensitive), any port:
      ``"billing.internal"``, ``"10.0.0.7"``, ``"[fd00::7]"``;
    - the same with a port, matched with that port only: ``"billing.internal:8443"``
      (a URL without a port means 80 for ``http``, 443 for ``https``);
    - a domain with a leading dot, matching every host below it:
      ``".svc.cluster.local"`` (not ``svc.cluster.local`` itself);
    - a compiled regular expression, matched against the whole host name
      (``fullmatch``, lowercase, no port): ``re.compile(r"[a-z]+\\.internal")``.

    Unlike sentry-sdk's ``trace_propagation_targets``, whose strings are
    searched for anywhere in the URL, a target never matches by accident:
    ``"api.internal"`` does not match ``api.internal.evil.example`` or a URL
    that merely mentions it.

    ``header_name`` is the header the request ID goes under; ``None`` (the
    default) uses the header name of the middleware serving the request, so
    services that share one name need not repeat it. ``business_headers`` maps
    business fields (see [`set_business_context`][asgi_sentry_ctx.set_business_context])
    to the headers they go under: ``{"podcast_id": "X-Podcast-ID"}``; fields
    not named never leave the process.

    Raises:
        ValueError: a target or a header name is malformed.
    """

    __slots__ = ("_domains", "_hosts", "_patterns", "business_headers", "header_name")

    def __init__(
        self,
        targets: Iterable[str | re.Pattern[str]] = (),
        *,
        header_name: str | None = None,
        business_headers: Mapping[str, str] | None = None,
    ) -> None:
        hosts: set[tuple[str, int | None]] = set()
        domains: list[str] = []
        patterns: list[re.Pattern[str]] = []
        for target in targets:
            if isinstance(target, re.Pattern):
                patterns.append(target)
            elif isinstance(target, str):
                host, port = _parse_target(target)
                if host.startswith("."):
                    domains.append(host)
                else:
                    hosts.add((host, port))
            else:
                raise ValueError(f"a target is a host name or a compiled pattern: {target!r}")
        self._hosts = frozenset(hosts)
        self._domains = tuple(domains)
        self._patterns = tuple(patterns)
        if header_name is not None:
            _check_header_name(header_name)
        self.header_name = header_name
        self.business_headers = dict(business_headers or {})
        for field, header in self.business_headers.items():
            _check_header_name(header, what=f"the header of business field {field!r}")

    def allows(self, host: str, port: int | None) -> bool:
        """Whether a request to ``host`` on ``port`` (the URL's, or its scheme's
        default) may carry the request ID."""
        host = host.lower()
        hosts = self._hosts
        if (host, None) in hosts or (host, port) in hosts:
            return True
        for domain in self._domains:
            if host.endswith(domain):
                return True
        return any(pattern.fullmatch(host) for pattern in self._patterns)

    def headers_for(self, host: str, port: int | None) -> tuple[tuple[str, str], ...]:
        """The headers an outgoing request to ``host`` on ``port`` gets now:
        none outside a request or for a host that is not a target.

        The caller adds those the request does not carry already.
        """
        state = current_request()
        if state is None or not self.allows(host, port):
            return _NOTHING
        request_id = state.request_id
        headers: list[tuple[str, str]] = []
        # Checked again: a request ID restored from elsewhere (a task queue)
        # did not necessarily pass the middleware's validation.
        if is_valid_request_id(request_id):
            headers.append((self.header_name or _served_header(state), request_id))
        if self.business_headers:
            _add_business(headers, self.business_headers)
        return tuple(headers)


def _served_header(state: RequestState) -> str:
    # The middleware's own state (``middleware._ServedRequest``) knows the
    # middleware, whose ``ids`` policy knows the header name; any other state
    # (restored by an adapter) gets the default.
    policy = getattr(getattr(state, "owner", None), "ids", None)
    name = getattr(policy, "header_name", None)
    return name if isinstance(name, str) else _DEFAULT_HEADER


def _add_business(headers: list[tuple[str, str]], named: Mapping[str, str]) -> None:
    fields = current_business_context()
    for field, header in named.items():
        text = _header_value(fields.get(field))
        if text is not None:
            headers.append((header, text))


def _header_value(value: Any) -> str | None:
    """``value`` as a header value, or ``None`` when it is absent or not header-safe."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if _SAFE_VALUE.fullmatch(text) else None


def _parse_target(target: str) -> tuple[str, int | None]:
    """A string target as ``(host, port)``; ``port`` is ``None`` for any port."""
    text = target.strip().lower()
    port: int | None = None
    if text.startswith("["):  # an IPv6 address, maybe with a port
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            raise ValueError(f"malformed target {target!r}")
        if not host or not re.fullmatch(r"[0-9a-f:.]+", host):
            raise ValueError(f"malformed target {target!r}")
        return host, port
    host, sep, rest = text.rpartition(":")
    if sep and rest.isdigit() and ":" not in host:
        text, port = host, int(rest)
    if not _HOST.fullmatch(text):
        raise ValueError(
            f"a target is a host name, host:port or .domain; for more, a compiled "
            f"pattern: {target!r}"
        )
    return text, port


def _check_header_name(name: str, *, what: str = "header_name") -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{what} is not a valid header name: {name!r}")
