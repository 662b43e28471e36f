"""The types the package shares: the ASGI interface, and the callables users pass in.

The ASGI aliases are Starlette's (``starlette.types``): mappings, not
``asgiref.typing``'s per-event ``TypedDict`` unions. Every framework that the
adapters serve types its apps this way, and a ``TypedDict`` is not assignable
to ``MutableMapping[str, Any]``: a middleware typed with asgiref's aliases
fails ``SentryContextMiddleware(starlette_app)`` and ``app.add_middleware(...)``
under the user's ``mypy --strict``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "ASGIApp",
    "IdGenerator",
    "IdValidator",
    "Message",
    "Processor",
    "Receive",
    "Scope",
    "Send",
    "TransactionNamer",
    "UserExtractor",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Processor = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]
"""A Sentry event processor: given an event and its hint, the event to send or ``None``."""

UserExtractor = Callable[[Scope], Any]
"""Given the ASGI scope, return the authenticated user (any shape) or ``None``."""

IdValidator = Callable[[str], bool]
"""Given an incoming request ID, whether to reuse it."""

IdGenerator = Callable[[], str]
"""Make a new request ID."""

TransactionNamer = Callable[[Scope], "tuple[str, str] | None"]
"""Given the ASGI scope of a request the app has routed, its transaction name
and Sentry's source for it (``"route"``, ``"component"``, ``"url"``,
``"custom"``), or ``None`` when the app does not know one."""
