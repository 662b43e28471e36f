"""Which tracing the SDK in force does: none, transactions, or streamed spans.

Asked on every request, answered from a memo: ``has_tracing_enabled(
Scope.get_client().options)`` costs five calls, a large share of a request's
budget (docs/performance.md), yet its answer changes only when another client
comes into force (``sentry_sdk.init``, ``Scope.set_client``). The answers are
remembered for the clients ``get_client`` chooses from.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk.scope
from sentry_sdk.scope import Scope, _current_scope
from sentry_sdk.tracing_utils import has_tracing_enabled

try:
    from sentry_sdk.tracing_utils import has_span_streaming_enabled
except ImportError:  # sentry-sdk before 2.5x: no span streaming

    def has_span_streaming_enabled(options: dict[str, Any] | None) -> bool:
        return False


__all__ = ["TracingMode", "tracing_mode"]


class TracingMode:
    """The answer for one set of clients in force."""

    __slots__ = ("clients", "options", "spans_streamed", "traced")

    def __init__(self, clients: tuple[object, object, object], options: dict[str, Any]) -> None:
        self.clients = clients
        #: The options of the client in force.
        self.options = options
        #: The SDK traces: transactions, or streamed spans.
        self.traced: bool = has_tracing_enabled(options)
        #: The SDK streams spans (``trace_lifecycle="stream"``): a span's data
        #: then comes from scope attributes, not from tags.
        self.spans_streamed: bool = has_span_streaming_enabled(options)


_memo = TracingMode((None, None, None), {})


def tracing_mode(isolation: Scope) -> TracingMode:
    """The tracing of the client in force under ``isolation`` (the current
    scope's, the isolation scope's or the global scope's)."""
    global _memo
    current = _current_scope.get()
    global_scope = sentry_sdk.scope._global_scope
    current_client = None if current is None else current.client
    isolation_client = isolation.client
    global_client = None if global_scope is None else global_scope.client
    memo = _memo
    clients = memo.clients
    if (
        current_client is clients[0]
        and isolation_client is clients[1]
        and global_client is clients[2]
    ):
        return memo
    memo = TracingMode(
        (current_client, isolation_client, global_client), Scope.get_client().options
    )
    _memo = memo
    return memo
