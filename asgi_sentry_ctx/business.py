"""Business context: which podcast, which episode, which action an event is about.

Fields live in a context variable, so they follow the code that set them: a
request, the tasks and threads it spawned after setting them, or a background
job's ``with business_context(...)`` block. They are applied to an event when it
is built: every field goes into the ``business`` context block as given, and
each field that is a valid Sentry tag also becomes a searchable tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

from sentry_sdk.scope import add_global_event_processor

if TYPE_CHECKING:
    from sentry_sdk._types import EventProcessor

__all__ = ["business_context", "set_business_context"]

_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("asgi_sentry_ctx.business", default=None)

# Sentry's ingestion rejects tags outside these limits.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,32}")
_MAX_TAG_VALUE = 200
_TAGGABLE = (str, int, float)


def set_business_context(**fields: Any) -> None:
    """Add fields to the business context of the current request or job.

    ``set_business_context(podcast_id="123", action="upload")`` tags every later
    event of this request with ``podcast_id`` and ``action`` and records both in
    its ``business`` context. A field set to ``None`` is removed. The fields
    end with the request; tasks and threads started afterwards inherit them.
    """
    _fields.set(_merged(_fields.get(), fields))


@contextmanager
def business_context(**fields: Any) -> Iterator[None]:
    """Apply business fields for a block of code, then restore what was there before.

    Made for background jobs and other code outside a request:

    ```python
    with business_context(podcast_id=podcast.id, action="transcribe"):
        transcribe(episode)
    ```
    """
    token = _fields.set(_merged(_fields.get(), fields))
    try:
        yield
    finally:
        _fields.reset(token)


def current_business_context() -> Mapping[str, Any]:
    """The business fields in force here (empty outside any)."""
    return _fields.get() or {}


def tag_value(value: Any) -> str | None:
    """The tag form of ``value``, or ``None`` when Sentry would reject it as a tag."""
    if isinstance(value, bool) or not isinstance(value, _TAGGABLE):
        return None
    text = str(value)
    if not text or len(text) > _MAX_TAG_VALUE or "\n" in text or "\r" in text:
        return None
    return text


def is_valid_tag_key(key: str) -> bool:
    """Whether Sentry accepts ``key`` as a tag key."""
    return _TAG_KEY.fullmatch(key) is not None


def _merged(
    current: Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    # A new dict every time: a snapshot that another task holds never changes under it.
    merged = dict(current) if current else {}
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged or None


def _apply_business(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    fields = _fields.get()
    if not fields:
        return event
    event.setdefault("contexts", {})["business"] = dict(fields)
    tags = event.setdefault("tags", {})
    for key, value in fields.items():
        text = tag_value(value)
        if text is not None and is_valid_tag_key(key):
            tags[key] = text
    return event


add_global_event_processor(cast("EventProcessor", _apply_business))
