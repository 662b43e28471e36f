"""The per-request state and the context variable that carries it.

One small object per request holds everything the library knows about that
request. It is created by the middleware, reachable through a single
``ContextVar`` (so tasks and threads that copy the request's
context see it too) and read lazily, when an event is actually built.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asgi_sentry_ctx._types import Scope, TransactionNamer, UserExtractor

__all__ = ["RequestState", "current_request"]


class RequestState:
    """What one request contributes to the events captured while it runs."""

    __slots__ = (
        "asgi_scope",
        "base_business",
        "base_current",
        "base_isolation",
        "breadcrumbs",
        "business",
        "ended_at",
        "id_source",
        "reported",
        "request_id",
        "started_at",
        "status",
        "transaction",
        "transaction_namer",
        "user",
        "user_cleared",
        "user_extractor",
    )

    def __init__(
        self,
        request_id: str,
        asgi_scope: Scope,
        user_extractor: UserExtractor | None,
        breadcrumbs: bool,
        started_at: float,
    ) -> None:
        self.request_id = request_id
        self.asgi_scope = asgi_scope
        self.user_extractor = user_extractor
        self.breadcrumbs = breadcrumbs
        self.started_at = started_at
        # Filled in as the request goes on; all optional.
        self.status: int | None = None
        self.ended_at: float | None = None
        self.user: dict[str, Any] | None = None
        self.business: Mapping[str, Any] | None = None
        self.user_cleared = False
        self.reported: BaseException | None = None
        self.transaction_namer: TransactionNamer | None = None
        # The header the request ID came from, with a preference list; else None.
        self.id_source: str | None = None
        # The request's transaction or segment span, while a sampled request runs.
        self.transaction: Any = None
        # What was in force outside any request when this one started (see
        # ``isolation.enter_request_scope``): what a request that a server
        # starts in a copy of this one's context must start from instead.
        self.base_isolation: Any = None
        self.base_current: Any = None
        self.base_business: Mapping[str, Any] | None = None


_current: ContextVar[RequestState | None] = ContextVar("asgi_sentry_ctx.request", default=None)
current_request = _current.get
