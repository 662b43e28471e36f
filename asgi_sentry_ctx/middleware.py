"""``SentryContextMiddleware``: one pure-ASGI middleware that gives every request its context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from time import time
from typing import Any

from asgi_sentry_ctx.capture import report_exception
from asgi_sentry_ctx.isolation import (
    ScopeTokens,
    enter_request_scope,
    exit_request_scope,
    send_outside_request_scope,
)
from asgi_sentry_ctx.logs import logger
from asgi_sentry_ctx.request_id import (
    IdGenerator,
    IdValidator,
    generate_request_id,
    is_valid_request_id,
)
from asgi_sentry_ctx.state import RequestState, UserExtractor, _current

__all__ = ["SentryContextMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
    it. ``lifespan`` and other scope types pass through untouched.

    A custom ``id_validator`` can only narrow what is accepted: an ID that is
    not safe to echo in a header and send as a tag (see
    :func:`~asgi_sentry_ctx.is_valid_request_id`) is replaced whatever it says.
    An incoming ID that is not reused is replaced in the request's headers as
    the app sees them, so it never reaches the app, its logs or Sentry.

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
        user_extractor: UserExtractor | None = None,
        exclude_paths: Iterable[str] = (),
        breadcrumbs: bool = True,
    ) -> None:
        self.app = app
        self.header = header_name.lower().encode("latin-1")
        self.response_header = response_header
        self.trust_incoming = trust_incoming
        self.generate_id = id_generator or generate_request_id
        self._new_id: IdGenerator = generate_request_id if id_generator is None else self._custom_id
        self.is_valid_id = is_valid_request_id if id_validator is None else _also_safe(id_validator)
        self.user_extractor = user_extractor
        self.exclude_paths = frozenset(exclude_paths)
        self.breadcrumbs = breadcrumbs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _REQUEST_TYPES:
            await self.app(scope, receive, send)
            return
        try:
            request_id = self._incoming_id(scope)
            if not request_id:
                rejected = request_id is not None
                request_id = self._new_id()
                if rejected:
                    scope = _with_request_id(scope, self.header, request_id)
            state = _ServedRequest(
                request_id,
                scope,
                self.user_extractor,
                self.breadcrumbs and scope["path"] not in self.exclude_paths,
                time(),
            )
            app_send = send
            if self.response_header or state.breadcrumbs:
                state.server_send = send
                state.header = self.header
                state.echo = request_id.encode("latin-1") if self.response_header else None
                app_send = state.send
            state.scope_tokens = enter_request_scope(state)
        except Exception:
            logger.exception("asgi_sentry_ctx: could not set up request context; passing through")
            await self.app(scope, receive, send)
            return
        state_token = _current.set(state)
        try:
            await self.app(scope, receive, app_send)
        except Exception as exc:
            report_exception(exc)
            raise
        finally:
            _current.reset(state_token)
            exit_request_scope(state.scope_tokens)
            # A server may hold on to the request's context after the request
            # (see ``send_outside_request_scope``), and with it this state: it
            # must keep neither the server's per-request objects nor, through
            # the scope tokens, the request task's whole context alive.
            state.scope_tokens = None
            if app_send is not send:
                state.server_send = _request_over

    def _incoming_id(self, scope: Scope) -> str | None:
        """The incoming request ID to reuse; ``""`` if one came that must not be
        reused (so the app must not see it either); ``None`` if none came."""
        header = self.header
        found: bytes | None = None
        # ASGI servers lowercase request header names.
        for name, value in scope["headers"]:
            if name == header:
                if found is not None:
                    return ""  # repeated: ambiguous, so untrusted
                found = value
        if found is None:
            return None
        if not self.trust_incoming:
            return ""
        try:
            candidate = found.decode("ascii")
        except UnicodeDecodeError:
            return ""
        try:
            if candidate and self.is_valid_id(candidate):
                return candidate
        except Exception:
            logger.exception("asgi_sentry_ctx: id_validator raised; a new ID is used")
        return ""

    def request_id_for(self, scope: Scope) -> str:
        """The request ID this middleware gives a request with ``scope``.

        The valid incoming one (when ``trust_incoming``), else a new one. Public
        so that an adapter can stamp the same kind of ID on responses its
        framework makes without running the middleware (Litestar's routing 404s).
        """
        return self._incoming_id(scope) or self._new_id()

    def _custom_id(self) -> str:
        request_id = self.generate_id()
        if not is_valid_request_id(request_id):
            # It goes into a response header and a tag: never trust it blindly.
            logger.error("asgi_sentry_ctx: id_generator returned an invalid ID; using a random one")
            return generate_request_id()
        return request_id


class _ServedRequest(RequestState):
    """A request's state, plus the ``send`` that records its status and echoes its ID.

    One object per request where a ``partial`` around ``send`` would add two:
    the hot path is measured in allocations.
    """

    __slots__ = ("echo", "header", "scope_tokens", "server_send")

    server_send: Send
    header: bytes
    echo: bytes | None  # the response header's value, or None for no header
    scope_tokens: ScopeTokens

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
            self.status = message.get("status", 101)
            self.ended_at = time()
            if self.echo is not None:
                headers = message.get("headers") or ()
                for name, _ in headers:
                    if name.lower() == self.header:
                        break
                else:
                    # A copy: the app may send the same message object every time.
                    message = dict(message)
                    message["headers"] = [*headers, (self.header, self.echo)]
        elif kind == "websocket.close":
            self.status = message.get("code", 1000)
            self.ended_at = time()
        return self.server_send(message)


async def _request_over(message: Message) -> None:
    raise RuntimeError(f"ASGI message {message['type']!r} sent after the request was over")


def _also_safe(validator: IdValidator) -> IdValidator:
    def is_valid(value: str) -> bool:
        # The safe-character rule first: the app's validator never sees hostile input.
        return is_valid_request_id(value) and validator(value)

    return is_valid


def _with_request_id(scope: Scope, header: bytes, request_id: str) -> Scope:
    """``scope`` itself, its rejected incoming ID (hostile, malformed, repeated
    or untrusted) replaced by ``request_id`` in its headers.

    In place, not in a copy: what runs outside us holds this very dict.
    sentry-sdk's middleware (outside ours whenever its framework integration
    is on) reads an event's request headers from it when the event is built,
    and a stack trace that reaches the frames out there sends their ``scope``
    locals. The ASGI spec asks for a copy so that a change does not leak
    upstream; here nothing upstream may keep the rejected value either. Only
    the ``headers`` entry is rebound: the server's own list is left alone.
    """
    headers = [(name, value) for name, value in scope["headers"] if name != header]
    headers.append((header, request_id.encode("ascii")))
    scope["headers"] = headers
    return scope
