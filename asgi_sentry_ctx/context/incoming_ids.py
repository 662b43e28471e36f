"""Where an incoming request ID may come from: an ordered list of request headers.

A service behind a proxy, a gateway or another traced service receives the ID
of the work it is part of under one of several names: ``X-Request-ID``,
``X-Correlation-ID``, the trace id of a W3C ``traceparent``, a cloud's trace
header. ``incoming_headers=[...]`` names them in order of preference; the
first one present whose value is valid wins, and its name is recorded on the
request's events (the ``request_id.source`` tag). Every candidate goes
through the same validation as the request-ID header itself: a hostile,
malformed or repeated value is skipped, never echoed.

Known headers are read for the ID they carry: ``traceparent`` its trace id
(version, 32-hex trace id not all zeros, 16-hex parent id not all zeros,
2-hex flags), ``X-Amzn-Trace-Id`` its ``Root``, ``X-Cloud-Trace-Context`` the
trace id before its ``/``. Any other header is taken whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["IncomingSource", "incoming_sources"]

Parse = Callable[[str], "str | None"]
IncomingSource = tuple[bytes, str, Parse]
"""A header (lowercased, as ASGI servers give them), its name as configured,
and how to read the ID out of its value (``None``: none in it)."""

_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)
_AMZN_ROOT = re.compile(r"(?:^|;)\s*Root=([^;]+)")


def traceparent_trace_id(value: str) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header value, else ``None``.

    Version ``ff`` is invalid; version ``00`` has exactly four fields; a later
    version may add fields after the flags, as the W3C spec lets parsers assume.
    """
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def _amzn_root(value: str) -> str | None:
    match = _AMZN_ROOT.search(value)
    return match.group(1).strip() if match else None


def _cloud_trace_id(value: str) -> str | None:
    return value.split("/", 1)[0].strip() or None


def _whole(value: str) -> str | None:
    return value


_PARSERS: dict[str, Parse] = {
    "traceparent": traceparent_trace_id,
    "x-amzn-trace-id": _amzn_root,
    "x-cloud-trace-context": _cloud_trace_id,
}


def incoming_sources(names: Iterable[str]) -> tuple[IncomingSource, ...]:
    """The sources for ``names``, in order; a name given twice counts once.

    Raises:
        ValueError: a name is empty or not a valid header name.
    """
    sources: list[IncomingSource] = []
    seen: set[bytes] = set()
    for name in names:
        if not name or not name.isascii() or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"asgi_sentry_ctx: {name!r} is not a header name")
        header = name.lower().encode("ascii")
        if header not in seen:
            seen.add(header)
            sources.append((header, name, _PARSERS.get(name.lower(), _whole)))
    return tuple(sources)
