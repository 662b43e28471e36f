"""``SentryContextMiddleware``: one pure-ASGI middleware that gives every request its context."""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable
from time import time
from typing import TYPE_CHECKING, Any

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.capture import report_exception, report_failed_response
from asgi_sentry_ctx.context.enrich import enrich_event
from asgi_sentry_ctx.context.isolation import (
    ScopeTokens,
    enter_request_scope,
    exit_request_scope,
    send_outside_request_scope,
)
from asgi_sentry_ctx.context.request_ids import RequestIdPolicy
from asgi_sentry_ctx.context.state import RequestState, _current
from asgi_sentry_ctx.context.traces import finish_request_trace
from asgi_sentry_ctx.sentry.framework_integrations import note_middleware
from asgi_sentry_ctx.sentry.hooks import setup_once

if TYPE_CHECKING:
    from asgi_sentry_ctx._types import (
        ASGIApp,
        IdGenerator,
        IdValidator,
        Message,
        Receive,
        Scope,
        Send,
        TransactionNamer,
        UserExtractor,
    )

__all__ = ["SentryContextMiddleware"]

_REQUEST_TYPES = frozenset({"http", "websocket"})


class SentryContextMiddleware:
    """Run every HTTP and websocket request with its own request ID and Sentry context.

    For each request it: reuses a valid incoming request ID (when
    ``trust_incoming``) or makes a new one, echoes it on the response
    (``http.response.start`` and ``websocket.accept``) unless the app set that
    header already, tags events with it; runs the request in its own Sentry
    isolation scope; resolves the user lazily with ``user_extractor`` when an
    event is built; adds entry and exit breadcrumbs (not for ``exclude_paths``,
    matched exactly); reports an exception escaping the app once and re-raises
    it, and a framework's HTTP exception answered with a status in
    ``failed_request_status_codes``. ``lifespan`` and other scope types pass
    through untouched.

    It owns the request's trace as sentry-sdk's ASGI middleware would: it
    continues an incoming ``sentry-trace``/``baggage`` (else starts a trace),
    takes the sampling decision first and starts a transaction only for a
    sampled request, named at its end by ``transaction_namer`` (the adapters
    pass one that reads the matched route) or else by its URL path, with its
    HTTP status. Error events get the same name. With
    ``trust_incoming_sampling=False``, a caller's trace is continued but its
    sampling decision is not followed (a public API's clients cannot force
    their requests into tracing).

    ``incoming_headers`` (an ordered list of header names) lets an incoming
    ID come from the first of several headers with a valid value:
    ``X-Correlation-ID``, a W3C ``traceparent``'s trace id, a cloud's trace
    header; the header it came from is the ``request_id.source`` tag.

    A custom ``id_validator`` can only narrow what is accepted: an ID that is
    not safe to echo in a header and send as a tag (see
    [`is_valid_request_id`][asgi_sentry_ctx.is_valid_request_id]) is replaced
    whatever it says. An incoming ID that is not reused is replaced in the
    request's headers as the app sees them, so it never reaches the app, its
    logs or Sentry.

    Put it outermost, so that it also sees the 500 responses produced by the
    framework's own error handling.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header_name: str = "X-Request-ID",
        response_header: bool = True,
        trust_incoming: bool = True,
        id_generator: IdGenerator | None = None,
        id_validator: IdValidator | None = None,
        incoming_headers: Iterable[str] | None = None,
        user_extractor: UserExtractor | None = None,
        exclude_paths: Iterable[str] = (),
        breadcrumbs: bool = True,
        transaction_namer: TransactionNamer | None = None,
        failed_request_status_codes: Collection[int] = range(500, 600),
        trust_incoming_sampling: bool = True,
    ) -> None:
        setup_once()
        note_middleware()
        self.app = app
        self.ids = RequestIdPolicy(
            header_name=header_name,
            response_header=response_header,
            trust_incoming=trust_incoming,
            id_generator=id_generator,
            id_validator=id_validator,
            incoming_headers=incoming_headers,
        )
        self.user_extractor = user_extractor
        self.exclude_paths = frozenset(exclude_paths)
        self.breadcrumbs = breadcrumbs
        self.transaction_namer = transaction_namer
        self.failed_request_status_codes = failed_request_status_codes
        self.trust_incoming_sampling = trust_incoming_sampling

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _REQUEST_TYPES:
            await self.app(scope, receive, send)
            return
        try:
            ids = self.ids
            source = None
            if ids.sources is None:
                request_id = ids.incoming(scope)
                if not request_id:
                    rejected = request_id is not None
                    request_id = ids.new_id()
                    if rejected:
                        ids.replace_incoming(scope, request_id)
            else:
                request_id, source = ids.from_sources(scope)
                request_id = request_id or ids.new_id()
                # The app sees the ID the request got, under the middleware's header.
                if ids.carries_other_id(scope, request_id):
                    ids.replace_incoming(scope, request_id)
            state = _ServedRequest(
                request_id,
                scope,
                self.user_extractor,
                self.breadcrumbs and scope["path"] not in self.exclude_paths,
                time(),
            )
            state.transaction_namer = self.transaction_namer
            state.id_source = source
            state.server_send = send
            state.owner = self
            state.echo = request_id.encode("latin-1") if ids.response_header else None
            # The state is the request's event processor (``_ServedRequest.__call__``).
            state.scope_tokens = enter_request_scope(
                state,
                state,  # type: ignore[arg-type]
                trust_sampling=self.trust_incoming_sampling,
            )
        except Exception:
            logger.exception("asgi_sentry_ctx: could not set up request context; passing through")
            await self.app(scope, receive, send)
            return
        state_token = _current.set(state)
        error: Exception | None = None
        try:
            await self.app(scope, receive, state.send)
        except Exception as exc:
            error = exc
            report_exception(exc)
            raise
        finally:
            if state.transaction is not None:
                finish_request_trace(state, error)
            _current.reset(state_token)
            exit_request_scope(state.scope_tokens)
            # A server may hold on to the request's context after the request
            # (see ``send_outside_request_scope``), and with it this state: it
            # must keep neither the server's per-request objects nor, through
            # the scope tokens, the request task's whole context alive.
            state.scope_tokens = None
            state.server_send = _request_over


class _ServedRequest(RequestState):
    """A request's state, its event processor, and the ``send`` that records its
    status and echoes its ID.

    One object per request where a ``partial`` around ``send`` and another
    around the processor would add more: the hot path is measured in allocations.
    """

    __slots__ = ("echo", "owner", "scope_tokens", "server_send")

    server_send: Send
    owner: SentryContextMiddleware
    echo: bytes | None  # the response header's value, or None for no header
    scope_tokens: ScopeTokens

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        """The request's event processor: add what this request knows to ``event``."""
        return enrich_event(self, event, hint)

    def send(self, message: Message) -> Awaitable[None]:
        """The server's ``send``, recording the response status and echoing the request ID.

        It returns the server's awaitable rather than being a coroutine itself:
        two sends per request would otherwise pay for two more coroutines. (The
        last message alone is sent by a coroutine, outside the request's
        Sentry scopes.)
        """
        kind = message["type"]
        if kind == "http.response.body":
            if message.get("more_body", False):
                return self.server_send(message)
            # The last message: see ``send_outside_request_scope`` for why.
            return send_outside_request_scope(self.server_send, message, self.scope_tokens)
        if kind == "http.response.start" or kind == "websocket.accept":
            status = self.status = message.get("status", 101)
            self.ended_at = time()
            if status in self.owner.failed_request_status_codes:
                report_failed_response()
            if self.echo is not None:
                # ``RequestIdPolicy.echoed``, inlined: one call fewer per request.
                header = self.owner.ids.header
                headers = message.get("headers") or ()
                for name, _ in headers:
                    if name.lower() == header:
                        break  # the app's own value wins
                else:
                    # A copy: the app may send the same message object every time.
                    message = dict(message)
                    message["headers"] = [*headers, (header, self.echo)]
        elif kind == "websocket.close":
            self.status = message.get("code", 1000)
            self.ended_at = time()
        return self.server_send(message)


async def _request_over(message: Message) -> None:
    raise RuntimeError(f"ASGI message {message['type']!r} sent after the request was over")
