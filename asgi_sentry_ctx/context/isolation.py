"""Per-request Sentry scopes.

A request gets its own isolation scope (where ``set_user``, tags and
breadcrumbs land) and, when tracing is on, its own current scope (where spans
land), forked from the ones in force outside any request, without their
user. When sentry-sdk's own ASGI middleware (which its Starlette, FastAPI,
Litestar and Quart integrations install) already runs this request in a fresh
isolation scope, that scope is reused: one fork per request, never two. A
request that a server starts in a copy of another request's context is
recognised by that request's state and starts from what it started from. The
response's last message alone is sent outside the request's scopes, so that a
context copy the server keeps does not keep them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import Token
from copy import deepcopy
from typing import TYPE_CHECKING, Any, TypeVar

from sentry_sdk.integrations.asgi import _asgi_middleware_applied
from sentry_sdk.scope import Scope, ScopeType, _current_scope, _isolation_scope

from asgi_sentry_ctx.context.business import _fields as _business_fields
from asgi_sentry_ctx.context.state import RequestState, _current, current_request
from asgi_sentry_ctx.context.traces import incoming_trace, start_request_trace
from asgi_sentry_ctx.context.tracing_mode import tracing_mode

if TYPE_CHECKING:
    from sentry_sdk._types import EventProcessor

__all__ = [
    "ScopeTokens",
    "enter_request_scope",
    "exit_request_scope",
    "record_process_base",
    "send_outside_request_scope",
]

M = TypeVar("M")


class _Rebased:
    """What a request started from its base restores: the context it was handed."""

    __slots__ = ("business", "current", "isolation", "request", "sdk_applied", "tokens")

    request: Token[RequestState | None]
    isolation: Token[Scope | None]
    current: Token[Scope | None]
    business: Token[Any]
    sdk_applied: Token[bool]
    tokens: ScopeTokens  # the request's own, inside the base


# The isolation scope's token; with tracing, the current scope's too; ``None``
# when the SDK's middleware made the scope; a ``_Rebased`` for a request
# started from its base. (No tuple in the common case: every object a request
# holds counts towards the garbage collector's next pass.)
ScopeTokens = Token[Any] | tuple[Token[Any], Token[Any]] | _Rebased | None

# The isolation scope in force where Sentry was initialised: the base of
# requests whose own base is out of reach (see ``record_process_base``).
_process_base: Scope | None = None


def record_process_base() -> None:
    """Remember the isolation scope in force here as the one outside any request.

    Called by ``init_sentry`` at start-up. Inside sentry-sdk's own middleware,
    the middleware never sees the scope the SDK forked a request's from: a
    request started in a copy of such a request's context starts from this one.
    """
    global _process_base
    if current_request() is None:  # a request's scope is no base
        _process_base = Scope.get_isolation_scope()


def enter_request_scope(
    state: RequestState, processor: EventProcessor, *, trust_sampling: bool = True
) -> ScopeTokens:
    """Run the current request in its own Sentry scopes, its events passed through ``processor``.

    The request starts from what is in force outside any request, even when
    the server starts it in a copy of another request's context (see
    ``_enter_from_base``). Records that base on ``state``, and returns
    what ``exit_request_scope`` needs to restore the previous scopes.
    """
    left_behind = current_request()
    if left_behind is not None:
        return _enter_from_base(state, processor, left_behind, trust_sampling)
    state.base_business = _business_fields.get()
    if _asgi_middleware_applied.get(False):
        # Inside the SDK's middleware, which forked both scopes for this request
        # already. The processor goes on the current scope: its processors run
        # after the isolation scope's, where SDK framework integrations add
        # theirs later in the request, so our user and request data win over
        # their partial ones (Quart's sets a user id from quart-auth's private
        # state, for one).
        isolation = _isolation_scope.get()
        if isolation is not None and isolation._user is not None:
            isolation._user = None  # a user set outside requests is not this request's
        # The scope the SDK forked from is out of reach: the process's base
        # stands in for it (see ``record_process_base``).
        state.base_isolation = _process_base
        current = _current_scope.get() or Scope.get_current_scope()
        current._event_processors.append(processor)
        if isolation is not None and tracing_mode(isolation).spans_streamed:
            # The SDK's request span ends in this isolation scope, after us.
            isolation.set_attribute("request_id", state.request_id)
        return None
    parent = _isolation_scope.get() or Scope.get_isolation_scope()
    state.base_isolation = parent
    state.base_current = _current_scope.get()
    isolation = _fork(parent)
    if isolation._user is not None:
        isolation._user = None  # a user set outside requests is not this request's
    if isolation._transaction is not None:
        _unname(isolation)  # nor is a transaction name (a job's span, say)
    # The scope is this request's alone: the SDK's ``add_event_processor`` guard
    # against unbounded growth of a long-lived scope's list buys nothing here.
    isolation._event_processors.append(processor)
    # A trace of its own per request (its id made lazily, if ever needed), or
    # the caller's: events and outgoing calls carry it, sampled or not.
    trace = isolation._propagation_context = incoming_trace(
        state.asgi_scope["headers"], trust_sampling=trust_sampling
    )
    isolation_token: Token[Any] = _isolation_scope.set(isolation)
    mode = tracing_mode(isolation)
    if not mode.traced:
        # Without tracing nothing the SDK writes to the current scope (spans)
        # reaches an event, so the second fork would buy nothing.
        return isolation_token
    if mode.spans_streamed:
        # Streamed spans take scope attributes, not tags.
        isolation.set_attribute("request_id", state.request_id)
    current = _fork(state.base_current or Scope.get_current_scope())
    if current._transaction is not None:
        _unname(current)
    tokens = isolation_token, _current_scope.set(current)
    start_request_trace(state, trace, mode, current)
    return tokens


def _unname(scope: Scope) -> None:
    scope._transaction = None
    scope._transaction_info = {}


def _enter_from_base(
    state: RequestState, processor: EventProcessor, left_behind: RequestState, trust_sampling: bool
) -> _Rebased:
    """Put back what ``left_behind``, the request in force, started from; then enter as usual.

    A request state in force at a request's start means the server started
    this request in a copy of another request's context: CPython's selector
    transport re-registers a connection's reader, after pausing it for a
    large body, in the context of the request that resumed it, so the next
    request on that connection starts in a copy of it (python/cpython#140947,
    uvicorn#2167), and pipelined requests can too (uvicorn#3158). Forking the
    scopes in force would fork that request's user, tags and breadcrumbs; its
    state recorded what it started from, which is this request's base too.
    (Also taken by a request an app makes to an ASGI app in process: a request
    of its own, it starts from the base as well.) The SDK's flag goes too: set
    in the copy, it would make its middleware skip the request.
    """
    rebased = _Rebased()
    rebased.request = _current.set(None)
    base = left_behind.base_isolation or Scope(ty=ScopeType.ISOLATION)
    rebased.isolation = _isolation_scope.set(base)
    # The current scope left behind holds that request's span, if any.
    rebased.current = _current_scope.set(left_behind.base_current)
    rebased.business = _business_fields.set(left_behind.base_business)
    rebased.sdk_applied = _asgi_middleware_applied.set(False)
    rebased.tokens = enter_request_scope(state, processor, trust_sampling=trust_sampling)
    return rebased


def _copy_scope(scope: Scope) -> Scope:
    """What ``Scope.__copy__`` does, for the sentry-sdk versions whose scopes
    hold exactly ``_COPIED_SLOTS``.

    ``__copy__`` reaches the breadcrumb deque and the feature flags through
    ``copy.copy`` and ``copy.deepcopy``, whose generic dispatch is a measurable
    share of the per-request cost (docs/performance.md, "Where the time goes"); the
    deque copies itself, and the flags are ``None`` until a feature-flag
    integration records one.
    """
    if type(scope) is not Scope:
        return scope.__copy__()  # a subclass may hold more
    rv: Scope = object.__new__(Scope)
    rv._type = scope._type
    rv.client = scope.client
    rv._level = scope._level
    rv._name = scope._name
    rv._fingerprint = scope._fingerprint
    rv._transaction = scope._transaction
    rv._transaction_info = scope._transaction_info.copy()
    rv._user = scope._user
    rv._tags = scope._tags.copy()
    rv._contexts = scope._contexts.copy()
    rv._extras = scope._extras.copy()
    rv._breadcrumbs = scope._breadcrumbs.copy()
    rv._n_breadcrumbs_truncated = scope._n_breadcrumbs_truncated
    rv._gen_ai_original_message_count = scope._gen_ai_original_message_count.copy()
    rv._event_processors = scope._event_processors.copy()
    rv._error_processors = scope._error_processors.copy()
    rv._propagation_context = scope._propagation_context
    rv._should_capture = scope._should_capture
    rv._span = scope._span
    rv._server_segment_span = scope._server_segment_span
    rv._session = scope._session
    rv._force_auto_session_tracking = scope._force_auto_session_tracking
    rv._attachments = scope._attachments.copy()
    rv._profile = scope._profile
    rv._last_event_id = scope._last_event_id
    flags = scope._flags
    rv._flags = None if flags is None else deepcopy(flags)
    rv._attributes = scope._attributes.copy()
    rv._gen_ai_conversation_id = scope._gen_ai_conversation_id
    return rv


_COPIED_SLOTS = frozenset(
    (
        "_type",
        "client",
        "_level",
        "_name",
        "_fingerprint",
        "_transaction",
        "_transaction_info",
        "_user",
        "_tags",
        "_contexts",
        "_extras",
        "_breadcrumbs",
        "_n_breadcrumbs_truncated",
        "_gen_ai_original_message_count",
        "_event_processors",
        "_error_processors",
        "_propagation_context",
        "_should_capture",
        "_span",
        "_server_segment_span",
        "_session",
        "_force_auto_session_tracking",
        "_attachments",
        "_profile",
        "_last_event_id",
        "_flags",
        "_attributes",
        "_gen_ai_conversation_id",
    )
)

# Another sentry-sdk whose scopes hold other attributes gets its own ``__copy__``.
_fork: Callable[[Scope], Scope] = (
    _copy_scope if frozenset(Scope.__slots__) == _COPIED_SLOTS else Scope.__copy__
)


def exit_request_scope(tokens: ScopeTokens) -> None:
    """Restore the scopes that were in force before ``enter_request_scope``."""
    if tokens is None:
        return
    if isinstance(tokens, _Rebased):
        exit_request_scope(tokens.tokens)
        _asgi_middleware_applied.reset(tokens.sdk_applied)
        _business_fields.reset(tokens.business)
        _current_scope.reset(tokens.current)
        _current.reset(tokens.request)
        isolation_token = tokens.isolation
    elif isinstance(tokens, tuple):
        isolation_token, current_token = tokens
        _current_scope.reset(current_token)
    else:
        isolation_token = tokens
    _isolation_scope.reset(isolation_token)


async def send_outside_request_scope(
    send: Callable[[M], Awaitable[None]], message: M, tokens: ScopeTokens
) -> None:
    """``send(message)`` outside the request's own Sentry scopes: for a response's last message.

    ``tokens`` are what ``enter_request_scope`` returned. A server may
    keep a copy of the context its ``send`` runs in: uvicorn arms its
    keep-alive timer there, which holds the copy until the connection's next
    request. The request's scopes held there would outlive it by that long,
    get promoted by the garbage collector, and under load make it run full
    collections of the whole heap: pauses of 15 ms (50 ms beside the SDK's
    middleware, whose scopes are hidden too) every few thousand requests (see
    docs/performance.md). Should the SDK be called meanwhile, it makes itself
    a scope that is thrown away after.
    """
    isolation_token = _isolation_scope.set(None)
    # The current scope is the request's own when tracing forked it, or when
    # the SDK's middleware made the scopes (``tokens`` is then ``None``).
    current_token = _current_scope.set(None) if not isinstance(tokens, Token) else None
    try:
        await send(message)
    finally:
        if current_token is not None:
            _current_scope.reset(current_token)
        _isolation_scope.reset(isolation_token)
