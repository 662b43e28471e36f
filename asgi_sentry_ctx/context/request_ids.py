"""Request IDs: what a valid one looks like, how a new one is made, where to read
it, and the policy that gives a request its ID."""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.incoming_ids import IncomingSource, incoming_sources
from asgi_sentry_ctx.context.state import current_request

if TYPE_CHECKING:
    from asgi_sentry_ctx._types import IdGenerator, IdValidator, Scope

__all__ = [
    "RequestIdPolicy",
    "generate_request_id",
    "get_request_id",
    "is_valid_request_id",
]

# Letters, digits and ``-_.:`` only: safe in a header, a log line and a Sentry tag.
_VALID_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def is_valid_request_id(value: str) -> bool:
    """Whether ``value`` is 1 to 128 ASCII letters, digits or ``-_.:``."""
    return _VALID_ID.fullmatch(value) is not None


def generate_request_id() -> str:
    """A fresh random request ID: 32 lowercase hex characters (128 bits from ``os.urandom``)."""
    try:
        return _ready_ids.pop()
    except IndexError:
        return _refill_ids()


# One ``os.urandom`` system call per request would be a large share of the
# middleware's per-request cost (docs/performance.md): IDs are drawn in batches. ``deque.pop`` and
# ``extend`` are atomic, so threads never share an ID, and a forked child
# starts from an empty batch, so it never repeats its parent's IDs.
_BATCH = 256
_ready_ids: deque[str] = deque()


def _refill_ids() -> str:
    digits = os.urandom(16 * _BATCH).hex()
    _ready_ids.extend([digits[i : i + 32] for i in range(32, len(digits), 32)])
    return digits[:32]


os.register_at_fork(after_in_child=_ready_ids.clear)


def get_request_id() -> str | None:
    """The ID of the request being handled, or ``None`` outside a request.

    Works in the handler, in tasks it spawned and in threads that run in a copy
    of its context (``asyncio.to_thread``, Starlette's threadpool).
    """
    state = current_request()
    return None if state is None else state.request_id


class RequestIdPolicy:
    """How a request gets its ID: the header that carries it, whether an incoming
    one is reused, how one is checked and made, and whether responses echo it.

    One object holds the rules, so that the middleware and an adapter that
    stamps responses its framework makes outside the middleware (Litestar's
    routing 404s) give the same kind of ID. A custom ``id_validator`` can only
    narrow what is accepted: an ID that is not safe to echo in a header and
    send as a tag (see `is_valid_request_id`) is rejected whatever it says.
    ``incoming_headers`` replaces the one header an incoming ID is read from
    by an ordered preference list (see ``incoming_ids``).
    """

    __slots__ = (
        "_generate",
        "header",
        "header_name",
        "is_valid_id",
        "new_id",
        "response_header",
        "sources",
        "trust_incoming",
    )

    def __init__(
        self,
        *,
        header_name: str = "X-Request-ID",
        response_header: bool = True,
        trust_incoming: bool = True,
        id_generator: IdGenerator | None = None,
        id_validator: IdValidator | None = None,
        incoming_headers: Iterable[str] | None = None,
    ) -> None:
        self.header_name = header_name
        self.header = header_name.lower().encode("latin-1")
        self.response_header = response_header
        self.trust_incoming = trust_incoming
        self._generate = id_generator or generate_request_id
        self.new_id: IdGenerator = generate_request_id if id_generator is None else self._custom_id
        """A new request ID (the generator's, checked)."""
        self.is_valid_id: IdValidator = (
            is_valid_request_id if id_validator is None else _also_safe(id_validator)
        )
        #: The preference list, or ``None`` for ``header_name`` alone (the fast path).
        self.sources: tuple[IncomingSource, ...] | None = (
            None if incoming_headers is None else incoming_sources(incoming_headers)
        )

    def incoming(self, scope: Scope) -> str | None:
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

    def from_sources(self, scope: Scope) -> tuple[str | None, str]:
        """The incoming request ID to reuse from the preference list (``None``
        if none is valid), and where it came from (its header's name, as
        configured, or ``"generated"``).

        The first source present with one valid value wins. A value that
        repeats its header is ambiguous, so untrusted, like one that fails
        validation: the next source is tried.
        """
        sources = self.sources or ()
        if not self.trust_incoming or not sources:
            return None, "generated"
        wanted = {header for header, _, _ in sources}
        found: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            if name in wanted:
                found.setdefault(name, []).append(value)
        for header, name, parse in sources:
            values = found.get(header)
            if values is None or len(values) != 1:
                continue
            candidate = self._checked(values[0], parse)
            if candidate is not None:
                return candidate, name
        return None, "generated"

    def _checked(self, raw: bytes, parse: Callable[[str], str | None]) -> str | None:
        try:
            candidate = parse(raw.decode("ascii"))
        except UnicodeDecodeError:
            return None
        try:
            if candidate and self.is_valid_id(candidate):
                return candidate
        except Exception:
            logger.exception("asgi_sentry_ctx: id_validator raised; the value is not used")
        return None

    def request_id_for(self, scope: Scope) -> str:
        """The request ID a request with ``scope`` gets: the valid incoming one, else a new one."""
        if self.sources is not None:
            return self.from_sources(scope)[0] or self.new_id()
        return self.incoming(scope) or self.new_id()

    def carries_other_id(self, scope: Scope, request_id: str) -> bool:
        """Whether ``scope`` has the request-ID header with a value other than ``request_id``."""
        header = self.header
        expected = request_id.encode("latin-1")
        return any(name == header and value != expected for name, value in scope["headers"])

    def replace_incoming(self, scope: Scope, request_id: str) -> None:
        """Replace the rejected incoming ID (hostile, malformed, repeated or
        untrusted) in ``scope``'s headers by ``request_id``.

        In place, not in a copy: what runs outside us holds this very dict.
        sentry-sdk's middleware (outside ours whenever its framework integration
        is on) reads an event's request headers from it when the event is built,
        and a stack trace that reaches the frames out there sends their ``scope``
        locals. The ASGI spec asks for a copy so that a change does not leak
        upstream; here nothing upstream may keep the rejected value either. Only
        the ``headers`` entry is rebound: the server's own list is left alone.
        """
        header = self.header
        headers = [(name, value) for name, value in scope["headers"] if name != header]
        headers.append((header, request_id.encode("ascii")))
        scope["headers"] = headers

    def echoed(
        self, headers: Collection[tuple[bytes, bytes]], request_id: bytes
    ) -> list[tuple[bytes, bytes]] | None:
        """Response ``headers`` with the request ID added, or ``None`` when they
        carry the header already (the app's own value wins)."""
        header = self.header
        for name, _ in headers:
            if name.lower() == header:
                return None
        return [*headers, (header, request_id)]

    def _custom_id(self) -> str:
        request_id = self._generate()
        if not is_valid_request_id(request_id):
            # It goes into a response header and a tag: never trust it blindly.
            logger.error("asgi_sentry_ctx: id_generator returned an invalid ID; using a random one")
            return generate_request_id()
        return request_id


def _also_safe(validator: IdValidator) -> IdValidator:
    def is_valid(value: str) -> bool:
        # The safe-character rule first: the app's validator never sees hostile input.
        return is_valid_request_id(value) and validator(value)

    return is_valid
