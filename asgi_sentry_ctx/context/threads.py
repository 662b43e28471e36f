"""Carrying a request's context into threads that do not copy it."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["bind_context"]

P = ParamSpec("P")
R = TypeVar("R")


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs in a copy of the caller's context, wherever it is called.

    ``loop.run_in_executor`` and bare threads copy no context: in work handed
    to them, ``get_request_id()`` and log records have no request ID and
    events have no business context. Bind it first:

    ```python
    await loop.run_in_executor(None, bind_context(resize), image)
    ```

    The context is copied when ``bind_context`` is called, not when ``fn``
    runs. (``asyncio.to_thread`` and Starlette's threadpool copy the context
    already.)
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one Context cannot be entered by two threads at once.
        return context.copy().run(fn, *args, **kwargs)

    return bound
