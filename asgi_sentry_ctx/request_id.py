"""Request IDs: what a valid one looks like, how a new one is made, and where to read it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from asgi_sentry_ctx.state import current_request

__all__ = ["generate_request_id", "get_request_id", "is_valid_request_id"]

# Letters, digits and ``-_.:`` only: safe in a header, a log line and a Sentry tag.
_VALID_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")

IdValidator = Callable[[str], bool]
IdGenerator = Callable[[], str]


def is_valid_request_id(value: str) -> bool:
    """Whether ``value`` is 1 to 128 ASCII letters, digits or ``-_.:``."""
    return _VALID_ID.fullmatch(value) is not None


def generate_request_id() -> str:
    """A fresh random request ID: 32 lowercase hex characters (128 bits)."""
    return os.urandom(16).hex()


def get_request_id() -> str | None:
    """The ID of the request being handled, or ``None`` outside a request.

    Works in the handler, in tasks it spawned and in threads that run in a copy
    of its context (``asyncio.to_thread``, Starlette's threadpool).
    """
    state = current_request()
    return None if state is None else state.request_id
